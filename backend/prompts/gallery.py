"""Starting templates for the playground, in English and Chinese: role prompt, few-shot
classification, chain-of-thought, extraction to JSON, summarise, translate, and a
customer-service answer grounded in context."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

_EXTRACT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "company": {"type": "string"},
                   "email": {"type": "string"}, "phone": {"type": "string"}},
    "required": ["name", "email"],
}


@dataclass(frozen=True)
class GalleryTemplate:
    key: str
    title: str
    description: str
    template: str
    system: str = ""
    examples: list[dict[str, str]] = field(default_factory=list)
    output_format: dict[str, Any] = field(default_factory=lambda: {"type": "text"})
    sample: dict[str, str] = field(default_factory=dict)  # values to try it with

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EN = [
    GalleryTemplate(
        "role", "Role prompt", "Give the model a role, an audience and a tone.",
        system="You are {{ role }}. You explain things to {{ audience }} in a friendly, "
               "precise way. Keep answers under {{ words }} words.",
        template="{{ question }}",
        sample={"role": "an experienced science teacher", "audience": "12-year-olds",
                "words": "120", "question": "Why is the sky blue?"}),
    GalleryTemplate(
        "classify", "Few-shot classification",
        "Classify text into fixed labels, taught by a few examples.",
        system="Classify the sentiment of the review as positive, negative or neutral. "
               "Answer with the label only.",
        template="Review: {{ review }}",
        examples=[{"user": "Review: The battery lasts for days. Love it!",
                   "assistant": "positive"},
                  {"user": "Review: It broke after a week.", "assistant": "negative"},
                  {"user": "Review: It arrived on Tuesday.", "assistant": "neutral"}],
        sample={"review": "Setup took two minutes and it just works."}),
    GalleryTemplate(
        "cot", "Chain of thought", "Ask for step-by-step reasoning before the answer.",
        system="Solve the problem. Think step by step, numbering the steps, then give the "
               "final answer on its own line as 'Answer: ...'.",
        template="Problem: {{ problem }}",
        sample={"problem": "A shop sells pens at 3 for 2 euros. How much do 12 pens cost?"}),
    GalleryTemplate(
        "extract", "Extract to JSON", "Pull fields out of free text as JSON that fits a schema.",
        system="Extract the contact details from the text. Reply with JSON only, with the keys "
               "name, company, email and phone (leave out what the text does not say).",
        template="Text:\n{{ text }}",
        output_format={"type": "json", "schema": _EXTRACT_SCHEMA},
        sample={"text": "Hi, this is Ana Silva from Nordlicht GmbH - write to "
                        "ana.silva@nordlicht.example or call +49 30 1234567."}),
    GalleryTemplate(
        "summarise", "Summarise", "A summary of a chosen length and style.",
        system="You write clear, faithful summaries. Do not add facts.",
        template="Summarise the following text in {{ sentences }} sentences for {{ audience }}."
                 "\n\n{{ text }}",
        sample={"sentences": "2", "audience": "a busy manager",
                "text": "The team moved the nightly build to the new cluster. Build times fell "
                        "from 50 to 18 minutes, and flaky tests dropped by half after the "
                        "network timeouts were raised. Costs rose by 5 percent."}),
    GalleryTemplate(
        "translate", "Translate", "Translation with a target language and register.",
        system="You are a professional translator. Keep names, numbers and formatting; reply "
               "with the translation only.",
        template="Translate into {{ language }} ({{ register }} register):\n\n{{ text }}",
        sample={"language": "Chinese", "register": "formal",
                "text": "Thank you for your order. It will ship within two working days."}),
    GalleryTemplate(
        "support", "Customer service with context",
        "Answer a customer from the given context only, and say so when it has no answer.",
        system="You are a support agent for {{ company }}. Answer only from the context. If "
               "the context does not contain the answer, say you will pass the question to a "
               "colleague. Be warm and brief.",
        template="Context:\n{{ context }}\n\nCustomer: {{ question }}",
        sample={"company": "Acme Cloud",
                "context": "Refunds are possible within 30 days of purchase. Annual plans can "
                           "be cancelled at any time; unused months are refunded.",
                "question": "I bought the annual plan 3 months ago. Can I still cancel?"}),
]

ZH = [
    GalleryTemplate(
        "role", "角色提示词", "给模型设定角色、受众和语气。",
        system="你是{{ role }}。你用友好而准确的方式向{{ audience }}解释问题。回答不超过"
               "{{ words }}字。",
        template="{{ question }}",
        sample={"role": "一位经验丰富的科学老师", "audience": "十二岁的学生", "words": "150",
                "question": "天空为什么是蓝色的？"}),
    GalleryTemplate(
        "classify", "少样本分类", "用几个示例教模型把文本分到固定的类别。",
        system="判断评论的情感：正面、负面或中性。只回答类别。",
        template="评论：{{ review }}",
        examples=[{"user": "评论：电池能用好几天，太喜欢了！", "assistant": "正面"},
                  {"user": "评论：用了一周就坏了。", "assistant": "负面"},
                  {"user": "评论：周二到的货。", "assistant": "中性"}],
        sample={"review": "两分钟就装好了，用起来很顺手。"}),
    GalleryTemplate(
        "cot", "思维链", "先一步一步推理，再给出答案。",
        system="解答问题。请一步一步思考并给步骤编号，最后单独一行写出“答案：……”。",
        template="问题：{{ problem }}",
        sample={"problem": "商店里 3 支笔卖 2 元，12 支笔多少钱？"}),
    GalleryTemplate(
        "extract", "抽取为 JSON", "从自由文本中抽取字段，输出符合模式的 JSON。",
        system="从文本中抽取联系人信息。只回复 JSON，键为 name、company、email 和 phone"
               "（文本中没有的就省略）。",
        template="文本：\n{{ text }}",
        output_format={"type": "json", "schema": _EXTRACT_SCHEMA},
        sample={"text": "您好，我是北极光科技的王芳，邮箱 wang.fang@beijiguang.example，"
                        "电话 010-12345678。"}),
    GalleryTemplate(
        "summarise", "摘要", "指定长度和风格的摘要。",
        system="你撰写清晰、忠实于原文的摘要，不添加事实。",
        template="请用{{ sentences }}句话为{{ audience }}总结下面的文字。\n\n{{ text }}",
        sample={"sentences": "两", "audience": "忙碌的经理",
                "text": "团队把每晚的构建迁移到了新集群。构建时间从 50 分钟降到 18 分钟，"
                        "调高网络超时后，不稳定的测试减少了一半。成本上升了 5%。"}),
    GalleryTemplate(
        "translate", "翻译", "指定目标语言和语体的翻译。",
        system="你是专业译者。保留人名、数字和格式；只回复译文。",
        template="请译成{{ language }}（{{ register }}语体）：\n\n{{ text }}",
        sample={"language": "英文", "register": "正式",
                "text": "感谢您的订购，我们将在两个工作日内发货。"}),
    GalleryTemplate(
        "support", "带上下文的客服回答", "只根据给定的上下文回答客户；没有答案时如实说明。",
        system="你是{{ company }}的客服。只根据上下文回答。如果上下文中没有答案，就说会把问题"
               "转给同事。语气亲切、简洁。",
        template="上下文：\n{{ context }}\n\n客户：{{ question }}",
        sample={"company": "极云科技",
                "context": "购买后 30 天内可以退款。年度套餐可随时取消，未使用的月份会退款。",
                "question": "我三个月前买了年度套餐，现在还能取消吗？"}),
]


def gallery(language: str = "en") -> list[GalleryTemplate]:
    return list(ZH if language.lower().startswith("zh") else EN)
