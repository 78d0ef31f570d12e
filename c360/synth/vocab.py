"""Word lists for the synthetic bank: names, places, merchants, employers, free text.

Everything here is invented for the generator (no real person data, no faker). Lists are
tuples so that their order, and therefore every random draw indexing into them, is fixed.
All Chinese text is restricted to characters that exist in GBK, because dirty mode writes
one CSV in GBK on purpose.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- names
CN_SURNAMES = (
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡",
    "郭", "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹",
    "彭", "曾", "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏",
    "魏", "吕", "丁", "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金",
    "欧阳", "司马", "上官",
)
CN_GIVEN_MALE = (
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华",
    "飞", "鑫", "波", "斌", "宇", "浩", "凯", "健", "俊", "帆", "建国", "志强", "子轩", "浩然",
    "宇航", "博文", "俊杰", "晨阳", "天佑", "文斌", "家豪", "明轩", "思远", "一鸣", "建华",
)
CN_GIVEN_FEMALE = (
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "玲", "婷", "雪", "慧", "晶", "颖", "琳",
    "倩", "洁", "欣", "怡", "悦", "梓涵", "欣怡", "诗涵", "雨桐", "梦琪", "佳怡", "思彤", "紫萱",
    "雅静", "晓燕", "秀英", "桂英", "淑华", "丽娟", "海燕", "文静", "婉清", "若曦", "子涵", "可馨",
)
EN_FIRST_MALE = (
    "James", "John", "Robert", "Michael", "David", "Daniel", "Thomas", "Mark", "Paul", "Kevin",
    "Brian", "Eric", "Jason", "Ryan", "Peter", "Lucas", "Oliver", "Henry", "Samuel", "Adam",
)
EN_FIRST_FEMALE = (
    "Mary", "Linda", "Susan", "Emily", "Sarah", "Laura", "Anna", "Emma", "Olivia", "Sophie",
    "Grace", "Chloe", "Hannah", "Julia", "Rachel", "Alice", "Claire", "Helen", "Lily", "Nora",
)
EN_LAST = (
    "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Anderson", "Clark",
    "Walker", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill",
    "Campbell", "Mitchell", "Roberts", "Carter", "Evans", "Turner", "Lee", "Wong", "Chan",
)
EMAIL_DOMAINS = ("example.com", "example.cn", "example.net", "mail.example.org")

# ------------------------------------------------------------------------- places
# (city, tier, 6-digit administrative-style region prefix used for synthetic national ids)
CITIES = (
    ("北京", 1, "110105"), ("上海", 1, "310115"), ("广州", 1, "440106"), ("深圳", 1, "440305"),
    ("杭州", 2, "330106"), ("南京", 2, "320106"), ("成都", 2, "510107"), ("武汉", 2, "420106"),
    ("西安", 2, "610113"), ("苏州", 2, "320505"), ("天津", 2, "120104"), ("重庆", 2, "500103"),
    ("长沙", 2, "430104"), ("青岛", 2, "370212"),
    ("洛阳", 3, "410305"), ("绵阳", 3, "510703"), ("柳州", 3, "450204"), ("赣州", 3, "360702"),
    ("宜昌", 3, "420502"), ("岳阳", 3, "430602"), ("湛江", 3, "440802"), ("九江", 3, "360402"),
    ("泰安", 3, "370902"), ("襄阳", 3, "420606"),
)
# branches per city by tier
BRANCHES_PER_TIER = {1: 12, 2: 6, 3: 3}

# --------------------------------------------------------------------- occupations
OCCUPATIONS = (
    "学生", "企业职员", "软件工程师", "公务员", "教师", "医生", "护士", "销售", "设计师",
    "金融从业者", "律师", "企业高管", "个体工商户", "企业主", "退休", "自由职业", "外卖骑手",
    "工人", "无业", "司机",
)

# ----------------------------------------------------------------- merchant world
# merchant_category -> merchants (counterparty of card/wallet spending)
MERCHANTS = {
    "groceries": ("永辉超市", "盒马鲜生", "沃尔玛", "物美超市", "华润万家", "社区便利店"),
    "dining": ("海底捞", "星巴克", "麦当劳", "肯德基", "瑞幸咖啡", "美团外卖", "饿了么"),
    "travel": ("携程旅行", "中国国际航空", "铁路12306", "如家酒店", "滴滴出行", "东方航空"),
    "e_commerce": ("淘宝", "京东", "拼多多", "唯品会", "抖音商城"),
    "utilities": ("国家电网", "自来水公司", "中国移动", "中国联通", "城市燃气", "物业管理处"),
    "education": ("新东方", "学而思", "大学学费", "驾校", "少儿编程中心"),
    "healthcare": ("人民医院", "大药房", "体检中心", "口腔诊所"),
    "luxury": ("周大福", "Apple Store", "奢品专柜", "高端百货"),
    "fuel": ("中国石化", "中国石油", "壳牌加油站"),
    "entertainment": ("万达影城", "腾讯视频", "爱奇艺", "KTV", "健身房"),
    "cash_withdrawal": ("ATM取现",),
    "transfer_out": ("个人转账", "信用卡还款", "房租", "亲友转账"),
}
SPEND_CATEGORIES = tuple(MERCHANTS)

EMPLOYER_PREFIX = (
    "华信", "远航", "星河", "蓝海", "东方", "鼎盛", "恒通", "中科", "新锐", "瑞丰", "金桥",
    "天成", "博远", "海纳", "汇智", "宏图", "启明", "安达", "锦程", "云端",
)
EMPLOYER_SUFFIX = (
    "科技有限公司", "信息技术有限公司", "制造有限公司", "贸易有限公司", "医药有限公司",
    "教育集团", "物流有限公司", "建设集团", "传媒有限公司", "餐饮管理有限公司",
)

# ---------------------------------------------------------------- digital pages
PAGES = (
    "home", "accounts", "transfer", "wealth", "loans", "cards", "product_detail",
    "search_results", "offers", "settings", "bill_pay", "statements",
)

# ---------------------------------------------------------------- service world
INTERACTION_REASONS = {
    # channel -> reasons (with a relative difficulty used for first-contact resolution)
    "branch": ("account_service", "card_issue", "wealth_consult", "loan_inquiry", "transfer",
               "password_reset", "complaint", "document_update"),
    "call_center": ("card_issue", "transaction_dispute", "password_reset", "loan_inquiry",
                    "complaint", "fee_inquiry", "lost_card"),
    "chatbot": ("balance_inquiry", "password_reset", "fee_inquiry", "card_issue", "app_help"),
    "video": ("wealth_consult", "loan_inquiry", "account_service", "document_update"),
}
REASON_DIFFICULTY = {
    "account_service": 0.10, "card_issue": 0.20, "wealth_consult": 0.15, "loan_inquiry": 0.25,
    "transfer": 0.08, "password_reset": 0.05, "complaint": 0.45, "document_update": 0.10,
    "transaction_dispute": 0.40, "fee_inquiry": 0.15, "lost_card": 0.10,
    "balance_inquiry": 0.05, "app_help": 0.30, "account_closure": 0.05,
}

COMPLAINT_CATEGORIES = (
    "fees", "service_attitude", "wait_time", "app_failure", "card_fraud",
    "wealth_mis_selling", "loan_process", "account_freeze",
)
COMPLAINT_TEXT = {
    "zh": {
        "fees": ("账户管理费扣款没有提前通知", "跨行转账手续费太高", "信用卡年费被重复收取"),
        "service_attitude": ("柜员态度很差，不耐烦", "客服人员敷衍，问题没有解决", "理财经理说话不礼貌"),
        "wait_time": ("网点排队时间超过一个小时", "客服电话一直打不进去", "取号后等了很久没有人办理"),
        "app_failure": ("手机银行登录一直报错", "转账时应用闪退，钱扣了没到账", "验证码收不到，无法登录"),
        "card_fraud": ("信用卡被盗刷，要求处理", "收到不明扣款短信，怀疑被盗刷", "境外出现未授权交易"),
        "wealth_mis_selling": ("理财产品风险没有说清楚，亏损严重", "被推荐了不适合我的高风险基金", "销售时承诺保本，实际亏损"),
        "loan_process": ("贷款审批太慢，材料反复提交", "提前还款手续复杂", "贷款利率与宣传不一致"),
        "account_freeze": ("账户被冻结，没有任何通知", "账户限制交易，影响工资使用", "解冻流程太复杂"),
    },
    "en": {
        "fees": ("Unexpected account fee without notice", "Transfer fee is far too high", "Annual card fee charged twice"),
        "service_attitude": ("Teller was rude and impatient", "Agent brushed me off, issue not solved", "Advisor was disrespectful"),
        "wait_time": ("Waited over an hour at the branch", "Could not get through to the hotline", "Long queue and nobody served me"),
        "app_failure": ("Mobile app keeps failing at login", "App crashed during a transfer", "Never received the SMS code"),
        "card_fraud": ("Unauthorised charges on my credit card", "Suspicious debit I did not make", "Fraudulent overseas transaction"),
        "wealth_mis_selling": ("Risk of the wealth product was not explained", "Sold a high-risk fund unsuitable for me", "Was told capital was guaranteed"),
        "loan_process": ("Loan approval took far too long", "Early repayment is too complicated", "Loan rate differs from the advert"),
        "account_freeze": ("Account frozen without notice", "Account restricted, cannot use my salary", "Unfreezing process is a nightmare"),
    },
}

# ------------------------------------------------------------- survey comments
# Positive and negative comment templates per language (>= 40 each). A comment is picked
# to match the polarity of the score it accompanies.
COMMENTS = {
    ("zh", "pos"): (
        "手机银行很好用，转账很快", "柜员服务很耐心，讲解清楚", "办理业务很顺利，几分钟就好了",
        "理财经理很专业，建议很实用", "客服一次就解决了我的问题", "网点环境干净，不用排队",
        "界面简洁，找功能很方便", "开户流程比以前简单多了", "工作人员热情周到，点赞",
        "贷款审批比预期快，很满意", "信用卡额度提升很及时", "视频客服很方便，不用跑网点",
        "智能客服回答准确", "到账速度快，体验很好", "大堂经理主动帮忙，很贴心",
        "服务效率高，值得推荐", "理财产品介绍很透明", "电话客服态度很好",
        "操作简单，老人也能用", "这次体验非常好，谢谢", "问题处理得很及时",
        "手机上就能办完，省时间", "工作人员专业又友好", "没有等待，直接办理",
        "投诉处理结果让我满意", "提醒服务很贴心", "每次来网点都很愉快",
        "小程序用起来很顺手", "客户经理定期回访，很负责", "账单清楚明白",
        "业务办理一次成功", "推荐的产品很适合我", "整体服务超出预期",
        "排队时间很短，效率高", "解答耐心细致", "安全验证方便又放心",
        "新版应用速度快了很多", "给我的建议很中肯", "服务热线接通很快", "对这家银行很满意",
    ),
    ("zh", "neg"): (
        "等了四十分钟才办完业务，太慢了", "手机银行经常闪退", "客服电话一直占线",
        "柜员态度冷淡，不耐烦", "问题来回跑了三趟还没解决", "手续费太高，不合理",
        "网点人太多，窗口只开了一个", "理财产品亏损，没有提前说明风险", "登录总是提示错误",
        "转账到账太慢", "贷款审批拖了很久", "验证码经常收不到",
        "智能客服答非所问", "排队时间太长了", "办一个简单业务要填很多表",
        "工作人员不专业，解释不清楚", "投诉了也没有人跟进", "信用卡被乱收费",
        "界面复杂，找不到功能", "中午去办业务根本没人", "服务效率很低",
        "电话转了好几次人工", "说好回电话，结果没有", "系统维护太频繁",
        "推销产品太多，很烦", "账户被冻结也不通知", "材料要求前后不一致",
        "视频客服经常断线", "网点搬迁没有通知", "体验很差，考虑换银行",
        "营业时间太短，下班后办不了", "每次都要重新排队", "人工客服太难接通",
        "收费不透明", "处理问题推来推去", "应用更新后更难用了",
        "取号后等了一个多小时", "对处理结果很不满意", "客户经理换了也没告知", "服务越来越差",
    ),
    ("en", "pos"): (
        "The app is quick and easy to use", "Teller was patient and explained everything",
        "Done in a few minutes, great service", "My advisor gave genuinely useful advice",
        "Hotline solved my issue at the first call", "Clean branch and no queue",
        "Opening the account was painless", "Very friendly and professional staff",
        "Loan approved faster than I expected", "Credit limit increase was quick",
        "Video banking saved me a trip", "Chatbot answered correctly", "Transfers arrive instantly",
        "Branch manager went out of his way to help", "Efficient service, would recommend",
        "Product fees were clearly explained", "Call centre agent was lovely",
        "Simple enough for my parents to use", "Excellent experience, thank you",
        "Issue handled promptly", "Could do everything on my phone", "No waiting at all today",
        "Complaint was resolved fairly", "Helpful reminders before payments",
        "Always a pleasant visit", "Mini program works smoothly", "Relationship manager follows up regularly",
        "Statements are clear", "Everything worked the first time", "The recommended product suits me well",
        "Service exceeded my expectations", "Short queue and fast service", "Patient and detailed answers",
        "Secure login that is still convenient", "The new app version is much faster",
        "Honest and balanced advice", "Hotline picked up right away", "Very happy with this bank",
        "Staff spoke English, very helpful", "Smooth and professional",
    ),
    ("en", "neg"): (
        "Waited forty minutes at the branch, far too slow", "The app crashes all the time",
        "Hotline was busy for ages", "Teller was cold and impatient",
        "Third visit and still not solved", "Fees are unreasonable",
        "Only one counter open for a full branch", "Lost money, risks were never explained",
        "Login keeps failing", "Transfers take too long", "Loan approval dragged on for weeks",
        "SMS codes never arrive", "Chatbot does not understand anything", "Queue was way too long",
        "Too many forms for a simple request", "Staff could not explain the product",
        "Nobody followed up on my complaint", "Charged fees I never agreed to",
        "Confusing menus, cannot find anything", "Nobody at the counter at lunch time",
        "Very inefficient service", "Transferred between agents five times",
        "Promised call back never came", "System maintenance far too often",
        "Too much product pushing", "Account frozen without any notice",
        "Document requirements keep changing", "Video call dropped twice",
        "Branch moved and nobody told me", "Bad experience, thinking of leaving",
        "Opening hours do not work for people with jobs", "Had to queue again every time",
        "Impossible to reach a human", "Fees are not transparent", "Everyone passes the problem on",
        "The update made the app worse", "Waited over an hour after taking a ticket",
        "Unhappy with how this was handled", "My advisor changed and nobody told me",
        "Service keeps getting worse",
    ),
}

SURVEY_CHANNELS = ("sms", "app", "wechat", "email")
