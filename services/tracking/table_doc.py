"""Render the transition table as Markdown for docs/TRACKING.md: `python -m services.tracking.table_doc`."""

from __future__ import annotations

from services.tracking.state_machine import ALL_STATES, TRANSITIONS, Verdict

ABBREV = {
    None: "none",
    "on_roll_at_risk": "risk",
    "missing_education": "ME",
    "whereabouts_unknown": "WU",
    "awaiting_provision": "AP",
    "place_offered": "PO",
    "transfer_pending": "TP",
    "handed_over": "HO",
    "awaiting_la_confirmation": "ALC",
    "part_time_provision": "PT",
    "in_education": "IE",
    "electively_home_educated": "EHE",
    "left_area": "LA",
    "moved_abroad": "abroad",
    "out_of_scope": "OOS",
}


def render() -> str:
    head = "| event kind \\ state | " + " | ".join(ABBREV[s] for s in ALL_STATES) + " | actions |"
    lines = [head, "|" + "---|" * (len(ALL_STATES) + 2)]
    for kind, row in TRANSITIONS.items():
        cells = []
        actions: set[str] = set()
        for state in ALL_STATES:
            rule = row[state]
            if rule.verdict == Verdict.MOVE:
                cells.append(f"**{ABBREV[rule.to_state]}**")
                actions.update(rule.actions)
            else:
                cells.append("·" if rule.verdict == Verdict.STAY else "✗")
        lines.append(f"| `{kind.value}` | " + " | ".join(cells) + f" | {', '.join(sorted(actions))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
