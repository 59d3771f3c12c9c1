"""Writes the tool-calling example's data: a parcel company's support assistant that looks orders
up and cancels them through two functions, and answers three policy questions without a tool.

    python examples/tools/make_data.py          # writes examples/tools/train.jsonl and eval.jsonl

Every conversation is OpenAI chat JSONL with a "tools" key, as OpenAI's fine-tuning took it: the
user asks, the assistant calls a function (``tool_calls``), the tool's result comes back as a
``tool`` message, and the assistant answers from it; or the assistant answers at once. Order
numbers, wordings and results are drawn with a fixed seed; the eval file uses order numbers and
wordings that training never shows. The company and its data are fictional.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEM = "You are the support assistant of Northwind Parcels. Use the tools to look up or cancel orders."
TOOLS = [
    {"type": "function", "function": {
        "name": "get_order_status", "description": "Look up where an order is and when it arrives",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "description": "the 5-digit order number"}},
                       "required": ["order_id"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "cancel_order", "description": "Cancel an order that has not shipped yet",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
                       "required": ["order_id", "reason"], "additionalProperties": False}}},
]
ASK_STATUS = ["Where is my order {id}?", "Can you check order {id} for me?", "What's the status of order {id}?",
              "Has order {id} shipped yet?", "When will order {id} arrive?", "Track order {id}, please.",
              "I'm still waiting for order {id}. Any news?", "Order number {id} - where is it?"]
ASK_STATUS_EVAL = ["Could you tell me what happened to order {id}?", "Is order {id} on its way?",
                   "Any update on my parcel, order {id}?"]
ASK_CANCEL = ["Please cancel order {id}, {reason}.", "I want to cancel order {id} because {reason}.",
              "Cancel my order {id}: {reason}.", "Can you cancel order {id}? {Reason}."]
ASK_CANCEL_EVAL = ["I'd like order {id} cancelled, {reason}."]
REASONS = ["I ordered the wrong size", "I found it cheaper elsewhere", "I no longer need it", "it was a duplicate order",
           "the delivery date is too late"]
STATES = [("in_transit", "is on its way"), ("delivered", "was delivered"), ("processing", "is being prepared")]
FAQ = [  # (questions, answer): answered without a tool
    (["What are your opening hours?", "When is support open?", "Are you open on weekends?", "What time can I call you?"],
     "Our support team is available Monday to Friday, 8:00 to 18:00."),
    (["How long do I have to return a parcel?", "What is your return policy?", "Can I still return my order after two weeks?",
      "How many days do I have for a return?"],
     "You can return any parcel within 30 days of delivery, free of charge."),
    (["How do I reach a person?", "What is your support email?", "Can I email you?", "How can I contact support?"],
     "Write to help@northwind-parcels.example and a person answers within one working day."),
]
FAQ_EVAL = [("When are you open for support?", 0), ("What's the deadline for returning a parcel?", 1),
            ("Is there an email address for support?", 2)]


def status_example(rng: random.Random, order: str, ask: str, n: int) -> dict:
    state, said = rng.choice(STATES)
    day = f"2026-12-{rng.randint(3, 28):02d}"
    result = {"order_id": order, "status": state, "date": day}
    answer = f"Order {order} {said}" + (f" on {day}." if state == "delivered" else f"; it should arrive on {day}.")
    return conversation(ask.format(id=order), "get_order_status", {"order_id": order}, result, answer, n)


def cancel_example(rng: random.Random, order: str, ask: str, n: int) -> dict:
    reason = rng.choice(REASONS)
    shipped = rng.random() < 0.3
    result = {"order_id": order, "cancelled": not shipped} | ({"error": "already shipped"} if shipped else {})
    answer = (f"Order {order} has already shipped, so it cannot be cancelled; you can return it within 30 days of delivery."
              if shipped else f"Order {order} is cancelled. You will be refunded within 5 working days.")
    return conversation(ask.format(id=order, reason=reason, Reason=reason[0].upper() + reason[1:]), "cancel_order",
                        {"order_id": order, "reason": reason}, result, answer, n)


def conversation(question: str, name: str, args: dict, result: dict, answer: str, n: int) -> dict:
    call_id = f"call_{n:05d}"
    return {"tools": TOOLS, "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
        {"role": "assistant", "content": answer},
    ]}


def faq_example(question: str, answer: str) -> dict:
    return {"tools": TOOLS, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
                                         {"role": "assistant", "content": answer}]}


def main(out: Path = HERE) -> None:
    rng = random.Random(19)
    orders = rng.sample(range(10000, 99999), 140)
    train_ids, eval_ids = [str(o) for o in orders[:110]], [str(o) for o in orders[110:]]
    train = [status_example(rng, o, ASK_STATUS[i % len(ASK_STATUS)], i) for i, o in enumerate(train_ids[:80])]
    train += [cancel_example(rng, o, ASK_CANCEL[i % len(ASK_CANCEL)], 200 + i) for i, o in enumerate(train_ids[80:])]
    train += [faq_example(q, a) for qs, a in FAQ for q in qs]
    rng.shuffle(train)
    held = [status_example(rng, o, ASK_STATUS_EVAL[i % 3], 500 + i) for i, o in enumerate(eval_ids[:18])]
    held += [cancel_example(rng, o, ASK_CANCEL_EVAL[0], 600 + i) for i, o in enumerate(eval_ids[18:24])]
    held += [faq_example(q, FAQ[k][1]) for q, k in FAQ_EVAL]
    for name, rows in (("train.jsonl", train), ("eval.jsonl", held)):
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{len(rows)} conversations -> {out / name}")


if __name__ == "__main__":
    main()
