"""Latent customer types and the product catalogue of the synthetic bank.

A latent type is the hidden "truth" a segmentation should rediscover: it drives the
demographics, channel habits, spending mix, balances, product needs and risk appetite of
its members. The catalogue is what the bank sells; the per-type affinity matrix says how
likely members of a type are to hold (at the start) and adopt (over time) each product.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .vocab import OCCUPATIONS, SPEND_CATEGORIES

TXN_CHANNELS = ("branch", "atm", "mobile", "online", "pos", "wechat", "call_center")
EVENT_CHANNELS = ("app", "web", "wechat_mini", "atm", "vtm")
SERVICE_CHANNELS = ("branch", "call_center", "chatbot", "video")
OFFER_CHANNELS = ("sms", "app_push", "email", "branch", "call")


@dataclass(frozen=True)
class CustomerType:
    name: str
    share: float  # share of the customer base
    age: tuple[float, float, int, int]  # mean, sd, min, max
    income_median: float  # CNY per year
    income_sigma: float  # lognormal sigma
    tier_p: tuple[float, float, float]  # P(city tier 1, 2, 3)
    occupations: dict[str, float]
    txn_per_year: float  # discretionary transactions per year (salary etc. come on top)
    salary_p: float  # P(receives a monthly payroll credit)
    sessions_per_year: float  # digital sessions per year
    digital_p: float  # P(customer researches products online before buying)
    txn_channels: tuple[float, ...]  # weights over TXN_CHANNELS (digital-affinity modifier)
    event_channels: tuple[float, ...]  # weights over EVENT_CHANNELS
    spend: dict[str, float]  # merchant_category weights
    night_share: float  # share of activity between 20:00 and 02:00
    weekend_factor: float  # relative activity on Saturday/Sunday
    wealth_multiple: float  # deposit wealth / annual income
    monthly_growth: float  # mean monthly drift of deposit wealth
    risk_p: tuple[float, float, float, float, float]  # P(risk tolerance R1..R5)
    service_per_year: float  # service contacts per year
    service_channels: tuple[float, float, float, float]  # weights over SERVICE_CHANNELS
    churn_p: float  # P(start winding down) per year, before complaint effects
    dormant_p: float  # P(going dormant) per year
    en_p: float  # P(preferred_language = en)
    satisfaction: float  # baseline satisfaction 0..1
    offer_channels: tuple[float, ...]  # weights over OFFER_CHANNELS


def _occ(**w: float) -> dict[str, float]:
    return w


TYPES: tuple[CustomerType, ...] = (
    CustomerType(
        "young_digital_spender", 0.16, (27, 3.5, 20, 36), 130_000, 0.45, (0.45, 0.40, 0.15),
        _occ(软件工程师=3, 设计师=2, 企业职员=3, 销售=1, 自由职业=1),
        63, 0.85, 12, 0.95,
        (0.01, 0.04, 0.35, 0.15, 0.15, 0.30, 0.00), (0.62, 0.10, 0.27, 0.005, 0.005),
        dict(groceries=1.5, dining=3, travel=1, e_commerce=3.5, utilities=0.8, entertainment=2,
             fuel=0.3, luxury=0.2, healthcare=0.2, education=0.2, cash_withdrawal=0.1, transfer_out=1),
        0.30, 1.35, 0.35, 0.012, (0.05, 0.15, 0.40, 0.30, 0.10), 0.8, (0.10, 0.30, 0.50, 0.10),
        0.10, 0.01, 0.06, 0.70, (0.20, 0.55, 0.15, 0.05, 0.05),
    ),
    CustomerType(
        "salaried_mass", 0.30, (40, 8, 24, 60), 95_000, 0.35, (0.20, 0.45, 0.35),
        _occ(企业职员=5, 教师=1.5, 公务员=1, 护士=1, 工人=2, 司机=1, 销售=1),
        40, 0.95, 3.5, 0.55,
        (0.06, 0.12, 0.28, 0.08, 0.24, 0.20, 0.02), (0.50, 0.15, 0.30, 0.03, 0.02),
        dict(groceries=3, dining=1.5, travel=0.4, e_commerce=1.5, utilities=1.5, entertainment=0.6,
             fuel=1, luxury=0.05, healthcare=0.5, education=0.8, cash_withdrawal=0.6, transfer_out=1),
        0.12, 1.05, 0.55, 0.006, (0.15, 0.40, 0.35, 0.08, 0.02), 1.5, (0.35, 0.40, 0.15, 0.10),
        0.07, 0.015, 0.03, 0.72, (0.40, 0.25, 0.15, 0.10, 0.10),
    ),
    CustomerType(
        "affluent_investor", 0.07, (48, 8, 30, 70), 600_000, 0.55, (0.60, 0.35, 0.05),
        _occ(企业高管=3, 金融从业者=2, 医生=1.5, 律师=1.5, 企业主=1),
        53, 0.60, 2.8, 0.70,
        (0.06, 0.03, 0.35, 0.20, 0.22, 0.12, 0.02), (0.55, 0.25, 0.15, 0.02, 0.03),
        dict(groceries=1.5, dining=2, travel=2.5, e_commerce=1.5, utilities=1, entertainment=0.8,
             fuel=1, luxury=1.5, healthcare=0.6, education=0.8, cash_withdrawal=0.1, transfer_out=1.5),
        0.10, 1.10, 3.0, 0.006, (0.02, 0.08, 0.30, 0.35, 0.25), 3.0, (0.45, 0.25, 0.05, 0.25),
        0.05, 0.005, 0.10, 0.75, (0.10, 0.25, 0.15, 0.35, 0.15),
    ),
    CustomerType(
        "senior_saver", 0.15, (67, 6, 56, 88), 60_000, 0.40, (0.25, 0.40, 0.35),
        _occ(退休=10, 个体工商户=0.3),
        19, 0.0, 0.45, 0.20,
        (0.40, 0.25, 0.08, 0.02, 0.20, 0.03, 0.02), (0.30, 0.05, 0.25, 0.25, 0.15),
        dict(groceries=4, dining=0.6, travel=0.3, e_commerce=0.3, utilities=2, entertainment=0.2,
             fuel=0.2, luxury=0.05, healthcare=1.5, education=0.1, cash_withdrawal=1.5, transfer_out=0.6),
        0.03, 0.95, 2.5, 0.002, (0.45, 0.40, 0.12, 0.03, 0.00), 4.0, (0.75, 0.20, 0.01, 0.04),
        0.04, 0.02, 0.01, 0.78, (0.20, 0.03, 0.02, 0.55, 0.20),
    ),
    CustomerType(
        "small_business_owner", 0.07, (44, 8, 28, 65), 300_000, 0.70, (0.25, 0.45, 0.30),
        _occ(个体工商户=5, 企业主=4),
        97, 0.10, 2.8, 0.50,
        (0.15, 0.06, 0.25, 0.22, 0.12, 0.17, 0.03), (0.50, 0.30, 0.15, 0.03, 0.02),
        dict(groceries=1.5, dining=1.5, travel=1, e_commerce=1.5, utilities=1.5, entertainment=0.4,
             fuel=1.2, luxury=0.3, healthcare=0.4, education=0.4, cash_withdrawal=0.8, transfer_out=4),
        0.15, 0.90, 0.8, 0.000, (0.05, 0.20, 0.40, 0.25, 0.10), 3.0, (0.45, 0.35, 0.10, 0.10),
        0.08, 0.02, 0.03, 0.65, (0.30, 0.20, 0.10, 0.25, 0.15),
    ),
    CustomerType(
        "credit_seeker", 0.08, (31, 6, 21, 50), 70_000, 0.35, (0.25, 0.40, 0.35),
        _occ(销售=2, 外卖骑手=2, 企业职员=2, 司机=1, 自由职业=1, 工人=1),
        53, 0.70, 4.9, 0.75,
        (0.02, 0.10, 0.35, 0.10, 0.18, 0.25, 0.00), (0.55, 0.10, 0.33, 0.01, 0.01),
        dict(groceries=2, dining=2, travel=0.3, e_commerce=3, utilities=1, entertainment=1.5,
             fuel=0.5, luxury=0.3, healthcare=0.3, education=0.2, cash_withdrawal=0.5, transfer_out=1.2),
        0.28, 1.20, 0.05, -0.004, (0.10, 0.30, 0.40, 0.15, 0.05), 2.0, (0.20, 0.50, 0.25, 0.05),
        0.14, 0.02, 0.02, 0.60, (0.35, 0.40, 0.10, 0.05, 0.10),
    ),
    CustomerType(
        "student", 0.07, (20, 1.5, 18, 24), 8_000, 0.50, (0.35, 0.45, 0.20),
        _occ(学生=10),
        26, 0.0, 6.3, 0.80,
        (0.00, 0.06, 0.40, 0.12, 0.12, 0.30, 0.00), (0.55, 0.10, 0.34, 0.005, 0.005),
        dict(groceries=1.5, dining=3, travel=0.5, e_commerce=3, utilities=0.3, entertainment=2.5,
             fuel=0.0, luxury=0.05, healthcare=0.2, education=1.5, cash_withdrawal=0.2, transfer_out=0.6),
        0.35, 1.40, 0.6, 0.000, (0.10, 0.30, 0.40, 0.15, 0.05), 0.5, (0.10, 0.30, 0.55, 0.05),
        0.12, 0.02, 0.08, 0.70, (0.20, 0.60, 0.10, 0.05, 0.05),
    ),
    CustomerType(
        "low_activity", 0.10, (45, 15, 18, 85), 45_000, 0.50, (0.15, 0.35, 0.50),
        _occ(企业职员=2, 工人=2, 无业=2, 退休=1, 自由职业=1, 司机=1),
        6, 0.15, 0.3, 0.20,
        (0.25, 0.35, 0.10, 0.05, 0.15, 0.08, 0.02), (0.45, 0.10, 0.25, 0.10, 0.10),
        dict(groceries=2, dining=0.5, travel=0.1, e_commerce=0.5, utilities=1, entertainment=0.2,
             fuel=0.3, luxury=0.0, healthcare=0.3, education=0.1, cash_withdrawal=2, transfer_out=0.5),
        0.10, 1.0, 0.2, 0.000, (0.30, 0.40, 0.25, 0.05, 0.00), 0.3, (0.50, 0.40, 0.05, 0.05),
        0.10, 0.15, 0.03, 0.62, (0.60, 0.10, 0.20, 0.05, 0.05),
    ),
)
TYPE_NAMES = tuple(t.name for t in TYPES)


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    family: str
    risk: str | None  # None for credit products (no suitability rating)
    min_age: int
    max_age: int
    active: bool


PRODUCTS: tuple[Product, ...] = (
    Product("CA001", "借记卡活期账户", "current_account", "R1", 16, 120, True),
    Product("SA001", "智能活期宝", "savings", "R1", 18, 120, True),
    Product("TD003", "三个月定期存款", "time_deposit", "R1", 18, 120, True),
    Product("TD012", "一年期定期存款", "time_deposit", "R1", 18, 120, True),
    Product("TD036", "三年期大额存单", "time_deposit", "R1", 18, 120, True),
    Product("WM030", "稳健理财30天", "wealth_management", "R2", 18, 120, True),
    Product("WM365", "安享理财一年期", "wealth_management", "R2", 18, 120, True),
    Product("WM901", "进取型理财计划", "wealth_management", "R3", 18, 75, True),
    Product("FD010", "稳利债券基金", "fund", "R3", 18, 80, True),
    Product("FD020", "均衡混合型基金", "fund", "R4", 18, 75, True),
    Product("FD030", "成长股票型基金", "fund", "R5", 18, 70, True),
    Product("FD040", "沪深300指数基金", "fund", "R4", 18, 75, True),
    Product("IN001", "重大疾病保险", "insurance", "R1", 18, 60, True),
    Product("IN002", "分红型年金保险", "insurance", "R2", 25, 65, True),
    Product("CC001", "标准信用卡", "credit_card", None, 18, 65, True),
    Product("CC002", "白金信用卡", "credit_card", None, 25, 70, True),
    Product("CC003", "青春信用卡", "credit_card", None, 18, 30, True),
    Product("PL001", "个人消费贷款", "personal_loan", None, 22, 60, True),
    Product("PL002", "个人经营贷款", "personal_loan", None, 25, 65, True),
    Product("MG001", "个人住房贷款", "mortgage", None, 22, 65, True),
    Product("PN001", "个人养老金账户", "pension", "R1", 18, 60, True),
    Product("GD001", "积存金", "gold", "R3", 18, 75, True),
    Product("WM800", "保本理财（已停售）", "wealth_management", "R1", 18, 120, False),
    Product("CC900", "旧版联名信用卡", "credit_card", None, 18, 65, False),
)
PRODUCT_CODES = tuple(p.code for p in PRODUCTS)
PRODUCT_INDEX = {p.code: i for i, p in enumerate(PRODUCTS)}
FAMILIES = tuple(dict.fromkeys(p.family for p in PRODUCTS))
# The catalogue re-send changes one product: the pension account's upper age limit moves
# from 60 to 63 (retirement-age reform). Adoption after the re-send uses the new limit.
CATALOG_CHANGE = ("PN001", "max_age", 63)

# Families whose balance is a share of the customer's deposit wealth (the rest are credit).
ASSET_FAMILIES = ("current_account", "savings", "time_deposit", "wealth_management", "fund",
                  "insurance", "pension", "gold")
CREDIT_FAMILIES = ("credit_card", "personal_loan", "mortgage")
# Families that customers research and buy as "investments": adoption reacts to balance growth.
INVEST_FAMILIES = ("savings", "time_deposit", "wealth_management", "fund", "pension", "gold")

# Affinity (0..1) of each type for each product; drives both initial holdings and adoption.
_AFFINITY: dict[str, dict[str, float]] = {
    "young_digital_spender": dict(SA001=.5, TD003=.1, WM030=.35, FD040=.45, FD020=.3, FD030=.25,
                                  CC001=.55, CC003=.6, PL001=.25, IN001=.2, GD001=.15, PN001=.2, MG001=.15),
    "salaried_mass": dict(SA001=.45, TD003=.3, TD012=.35, WM030=.3, WM365=.2, FD010=.15, FD040=.15,
                          CC001=.5, PL001=.2, MG001=.3, IN001=.3, IN002=.15, PN001=.3, GD001=.1),
    "affluent_investor": dict(SA001=.5, TD012=.3, TD036=.5, WM030=.5, WM365=.6, WM901=.5, FD010=.4,
                              FD020=.5, FD030=.4, FD040=.45, IN002=.5, IN001=.35, CC002=.7, MG001=.35,
                              PN001=.35, GD001=.4, WM800=.1),
    "senior_saver": dict(SA001=.3, TD003=.5, TD012=.7, TD036=.6, WM030=.3, WM365=.35, IN002=.2,
                         FD010=.05, GD001=.15, WM800=.15),
    "small_business_owner": dict(SA001=.4, TD003=.3, WM030=.35, FD020=.2, CC001=.45, CC002=.3,
                                 PL002=.6, PL001=.15, MG001=.25, IN001=.2, GD001=.15, CC900=.05),
    "credit_seeker": dict(CC001=.7, CC003=.45, PL001=.7, SA001=.1, IN001=.05, CC900=.1),
    "student": dict(SA001=.3, CC003=.5, FD040=.1, WM030=.05),
    "low_activity": dict(SA001=.1, TD012=.1, CC001=.05),
}


def affinity_matrix() -> np.ndarray:
    """(types x products) affinity; the current account is universal."""
    m = np.zeros((len(TYPES), len(PRODUCTS)), dtype=np.float64)
    for ti, t in enumerate(TYPES):
        for code, a in _AFFINITY[t.name].items():
            m[ti, PRODUCT_INDEX[code]] = a
    m[:, PRODUCT_INDEX["CA001"]] = 1.0
    return m


@dataclass(frozen=True)
class Catalogue:
    """What one simulated bank sells: its products, the change of the catalogue re-send and
    the credit amount multipliers of premium products (e.g. a platinum card's limit)."""

    name: str
    products: tuple[Product, ...]
    change: tuple[str, str, int]  # (product code, "max_age", new value) of the catalogue re-send
    amount_mult: dict[str, float] = field(default_factory=dict)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.products)

    @property
    def index(self) -> dict[str, int]:
        return {p.code: i for i, p in enumerate(self.products)}

    @property
    def family(self) -> np.ndarray:
        return np.array([p.family for p in self.products])

    @property
    def current_account(self) -> int:
        """Index of the current account every customer holds (the first of its family)."""
        return [p.family for p in self.products].index("current_account")

    @property
    def buyable(self) -> np.ndarray:
        """Indices of the products a customer can browse and buy (active, not the current account)."""
        return np.array([i for i, p in enumerate(self.products) if p.active and p.family != "current_account"])

    @property
    def risk_digit(self) -> np.ndarray:
        """Risk level 1..5 of each product, 0 when unrated."""
        return np.array([int(p.risk[1]) if p.risk else 0 for p in self.products])

    def amount_multipliers(self) -> np.ndarray:
        return np.array([self.amount_mult.get(p.code, 1.0) for p in self.products])


DEMO_CATALOGUE = Catalogue("demo", PRODUCTS, CATALOG_CHANGE, {"CC002": 2.5, "PL002": 2.0})


def family_affinity() -> dict[str, dict[str, float]]:
    """Each type's affinity for a product family: its highest affinity for a demo product
    of that family (other worlds derive their products' affinities from it)."""
    out: dict[str, dict[str, float]] = {}
    for t in TYPES:
        fam: dict[str, float] = {}
        for code, a in _AFFINITY[t.name].items():
            f = PRODUCTS[PRODUCT_INDEX[code]].family
            fam[f] = max(fam.get(f, 0.0), a)
        out[t.name] = fam
    return out


def occupation_matrix() -> np.ndarray:
    """(types x OCCUPATIONS) probabilities."""
    m = np.zeros((len(TYPES), len(OCCUPATIONS)))
    for ti, t in enumerate(TYPES):
        for occ, w in t.occupations.items():
            m[ti, OCCUPATIONS.index(occ)] = w
    return m / m.sum(axis=1, keepdims=True)


def spend_matrix() -> np.ndarray:
    """(types x SPEND_CATEGORIES) probabilities."""
    m = np.array([[t.spend.get(c, 0.0) for c in SPEND_CATEGORIES] for t in TYPES])
    return m / m.sum(axis=1, keepdims=True)


def type_array(attr: str) -> np.ndarray:
    """A per-type parameter as an array indexed by type id."""
    return np.array([getattr(t, attr) for t in TYPES], dtype=np.float64)


def type_matrix(attr: str) -> np.ndarray:
    """A per-type weight tuple as a row-normalised matrix."""
    m = np.array([getattr(t, attr) for t in TYPES], dtype=np.float64)
    return m / m.sum(axis=1, keepdims=True)


# Typical amount (CNY, median) of one spending transaction per merchant category.
SPEND_MEDIAN = dict(groceries=110, dining=75, travel=850, e_commerce=190, utilities=160,
                    education=2500, healthcare=380, luxury=6500, fuel=320, entertainment=60,
                    cash_withdrawal=1000, transfer_out=1800)
# Which transaction channels suit which merchant category (weights over TXN_CHANNELS).
CATEGORY_CHANNELS = {
    "groceries": (0.02, 0.0, 0.20, 0.02, 0.56, 0.20, 0.0),
    "dining": (0.0, 0.0, 0.25, 0.05, 0.30, 0.40, 0.0),
    "travel": (0.02, 0.0, 0.45, 0.35, 0.10, 0.08, 0.0),
    "e_commerce": (0.0, 0.0, 0.40, 0.40, 0.0, 0.20, 0.0),
    "utilities": (0.10, 0.0, 0.40, 0.20, 0.0, 0.28, 0.02),
    "education": (0.15, 0.0, 0.35, 0.30, 0.10, 0.10, 0.0),
    "healthcare": (0.05, 0.0, 0.20, 0.05, 0.55, 0.15, 0.0),
    "luxury": (0.05, 0.0, 0.10, 0.15, 0.70, 0.0, 0.0),
    "fuel": (0.0, 0.0, 0.15, 0.0, 0.65, 0.20, 0.0),
    "entertainment": (0.0, 0.0, 0.40, 0.20, 0.15, 0.25, 0.0),
    "cash_withdrawal": (0.12, 0.88, 0.0, 0.0, 0.0, 0.0, 0.0),
    "transfer_out": (0.15, 0.0, 0.45, 0.25, 0.0, 0.12, 0.03),
}
