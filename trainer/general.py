"""Replay of the base model's own general answers, mixed into fine-tuning.

Grounded fine-tuning teaches a small model one layout (passages, question, short cited answer).
Trained on that alone it forgets how to answer anything else: after the first CPU runs,
"What is the capital of France?" came back garbled. Replaying the base model's own answers to
general prompts (self-distillation) keeps that behaviour while the adapter learns the manuals;
it needs no other data and no other model.
"""

from __future__ import annotations

PROMPTS = [
    "What is the capital of France?",
    "How many days are there in a week?",
    "What should you do before opening an electrical cabinet?",
    "Explain what a fuse does in one sentence.",
    "What is 12 multiplied by 8?",
    "Give me three tips for working safely on a ladder.",
    "What does PPE stand for?",
    "Why should hydraulic oil be kept clean?",
    "What is the boiling point of water at sea level in Celsius?",
    "Write a short, polite email asking a colleague for the maintenance log.",
    "What is the difference between AC and DC current?",
    "How do I convert 5 kilometres to miles?",
    "What is a torque wrench used for?",
    "Name the primary colours of light.",
    "Summarise why regular maintenance matters for machines.",
    "What is the largest planet in our solar system?",
    "How should a fire extinguisher be used? Answer briefly.",
    "What does a pressure relief valve protect against?",
    "Translate 'good morning' into Spanish.",
    "What is the freezing point of water in Fahrenheit?",
    "How many minutes are there in two hours?",
    "What is lockout/tagout?",
    "Hello! Who are you?",
    "What is a good way to organise a workbench?",
    "Why do bearings need lubrication?",
    "What is the chemical symbol for iron?",
    "List two signs that a belt drive needs attention.",
    "What does an ohmmeter measure?",
    "Who wrote Romeo and Juliet?",
    "What is the square root of 81?",
    "Give one reason to label cables in a control panel.",
    "What is the speed of sound in air, roughly?",
    "How do you reset a tripped circuit breaker safely?",
    "What is the purpose of a grounding wire?",
    "Thank you for your help!",
    "What is the main cause of rust on steel?",
    "What unit is used to measure electrical resistance?",
    "Explain in one sentence what a manual is for.",
    "What is 15 percent of 200?",
    "What should you check before starting a forklift?",
]


BATCH = 8  # prompts generated together (left-padded)


def self_distill(model, tokenizer, count: int, max_new_tokens: int, log) -> list[list[dict]]:
    """The base model's greedy answers to `count` general prompts, as chat conversations.

    Answers that do not finish within `max_new_tokens` are dropped (a truncated reply would
    teach the model to stop mid-sentence). Call before the adapter is attached.
    """
    import torch

    prompts = PROMPTS[:count]
    if not prompts:
        return []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    stops = model.generation_config.eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops]) | {tokenizer.eos_token_id}
    conversations = []
    try:
        for start in range(0, len(prompts), BATCH):
            group = prompts[start : start + BATCH]
            batch = tokenizer(
                texts[start : start + BATCH],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(model.device)
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    repetition_penalty=1.1,
                    pad_token_id=tokenizer.pad_token_id,
                )
            for prompt, row in zip(group, out[:, batch["input_ids"].shape[1] :].tolist()):
                end = next((i for i, t in enumerate(row) if t in stops), None)
                reply = "" if end is None else tokenizer.decode(row[:end], skip_special_tokens=True)
                if reply.strip():
                    conversations.append(
                        [
                            {"role": "user", "content": prompt},
                            {"role": "assistant", "content": reply.strip()},
                        ]
                    )
    finally:
        tokenizer.padding_side = side
    log(f"general replay: {len(conversations)} of {len(prompts)} base-model answers kept")
    return conversations
