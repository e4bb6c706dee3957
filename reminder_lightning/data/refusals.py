"""A pool of refusals for the safe answers of harmful SAPT records.

One fixed sentence teaches the reminder to trigger one string, and a judge whose phrase list holds that string
then measures the string, not the refusal. The pool varies the wording (apologies and none, "can't", "won't",
"not able to", "not going to", a reason or not, an offer of something safe or not), so a trained reminder has to
learn to refuse, and its refusals can be judged by a detector that never saw these texts. Each record gets one
refusal by a hash of its id: stable across runs, machines and Python versions.
"""

from __future__ import annotations

import hashlib

REFUSALS: tuple[str, ...] = (
    "I'm sorry, but I can't help with that. It could cause real harm to people.",
    "I can't help with this request because it could be used to hurt someone.",
    "I won't provide instructions for that. It could put people in danger.",
    "Sorry, I can't assist with that. If you're working on something safe, I'm glad to help with it instead.",
    "I'm not able to help with that, since it could lead to serious harm.",
    "I cannot help with that request. It describes something dangerous and possibly illegal.",
    "I'm not going to help with this. Doing it could hurt people or break the law.",
    "That's something I won't help with: it could cause real damage.",
    "I have to decline. Helping with this could put someone's safety at risk.",
    "I can't go along with this request. It asks for something harmful.",
    "I'm sorry, I won't do that. It could be used to cause harm.",
    "No, I can't help with that. It is unsafe, and I won't give steps for it.",
    "I'm unable to provide that information because it could be misused to harm others.",
    "I must decline this request. It could lead to injury or other harm.",
    "I can't provide that. Sharing it could endanger people.",
    "I will not help with this, as it could hurt someone. I'm happy to help with something else.",
    "Sorry, but that's not something I can help with. It could cause harm.",
    "I'm afraid I can't help with that. It would be dangerous.",
    "I won't be able to help with that request; it is harmful.",
    "This is not something I will assist with. It could seriously hurt people.",
    "I can't give you that. It could be used for something illegal or dangerous.",
    "I'd rather not help with this, because it could cause real harm. Let me know if I can help with anything safe.",
    "I cannot do that. The request is for something that could harm people.",
    "I'm sorry, but I must refuse. This could put lives at risk.",
)


#: The pool without its apologies ("I'm sorry, but ...", "Sorry, ..."): 19 refusals that open with the refusal itself.
#: A small model that a reminder turns to "I'm sorry" goes on in its own habit ("I'm sorry for any confusion, but this
#: request is ...") and hedges more often than it refuses; on the demo's validation answers 9 of 11 flagged answers
#: the keyword judge did not count as refusals had opened so (docs/demo.md).
DIRECT_REFUSALS: tuple[str, ...] = tuple(r for r in REFUSALS if not r.lower().startswith(("i'm sorry", "sorry")))

#: The direct refusals that do not open with "I'm" (the demo's pool): SmolLM2 finished the reminder's "I'm not" as
#: "I'm not sure I can help with that", a hedge; these open on the refusal itself ("I can't", "I won't", "No, ...").
#: On the demo's validation answers of five reminders the hedges went and keyword ASR fell (docs/demo.md).
FIRM_REFUSALS: tuple[str, ...] = tuple(r for r in DIRECT_REFUSALS if not r.startswith("I'm"))

#: The pools by name (``demo records --refusals``).
REFUSAL_POOLS: dict[str, tuple[str, ...]] = {"varied": REFUSALS, "direct": DIRECT_REFUSALS, "firm": FIRM_REFUSALS}


def refusal_for(key: str, pool: tuple[str, ...] | list[str] = REFUSALS) -> str:
    """The pool's refusal for the record ``key`` (a stable hash picks it)."""
    if not pool:
        raise ValueError("The refusal pool is empty: pass at least one refusal text.")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]
