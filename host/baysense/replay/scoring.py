"""Score detector events against labels: episodes of one parked vehicle, and negative files.

An episode is one rise and the following fall of the label (vacant -> occupied -> vacant). It is
correct when the detector reports exactly one `occupied` within [rise - EARLY_MS, rise + LATE_MS],
exactly one `vacant` within [fall - EARLY_MS, fall + LATE_MS], and no other event. A negative
file (vehicles passing, never parking) is correct when it reports no `occupied` at all.
"""

from dataclasses import dataclass, field

STATE_VACANT = 0
STATE_OCCUPIED = 1

EARLY_MS = 2000  # a report this long before the labelled change still counts
LATE_MS = 15000  # ... and this long after it


@dataclass
class Episode:
    """One labelled stay and how the detector's events matched it."""

    rise_ms: int
    fall_ms: int  # None when the recording ends with the vehicle still present
    correct: bool = False
    problems: list = field(default_factory=list)


def label_episodes(times_ms, labels):
    """Return the labelled stays as Episodes, in time order."""
    episodes = []
    previous = labels[0] if labels else 0
    # A recording that starts occupied has no rise to score, so its first stay is skipped.
    open_rise = None
    for now, label in zip(times_ms, labels):
        if label and not previous:
            open_rise = now
        elif previous and not label and open_rise is not None:
            episodes.append(Episode(open_rise, now))
            open_rise = None
        previous = label
    if open_rise is not None:
        episodes.append(Episode(open_rise, None))
    return episodes


def _window(center):
    return center - EARLY_MS, center + LATE_MS


def score_episodes(episodes, events):
    """Mark each episode correct or not; every event is charged to the episode nearest to it."""
    if not episodes:
        return episodes
    charged = [[] for _ in episodes]
    for event in events:
        best = 0
        best_distance = None
        for index, episode in enumerate(episodes):
            start = episode.rise_ms - EARLY_MS
            end = (episode.fall_ms if episode.fall_ms is not None else episode.rise_ms) + LATE_MS
            if start <= event.time_ms <= end:
                distance = 0
            else:
                distance = min(abs(event.time_ms - start), abs(event.time_ms - end))
            if best_distance is None or distance < best_distance:
                best, best_distance = index, distance
        charged[best].append(event)

    for episode, mine in zip(episodes, charged):
        low, high = _window(episode.rise_ms)
        occupied = [e for e in mine if e.state == STATE_OCCUPIED and low <= e.time_ms <= high]
        if len(occupied) != 1:
            episode.problems.append("%d occupied reports near the arrival" % len(occupied))
        expected = len(occupied[:1])
        if episode.fall_ms is not None:
            low, high = _window(episode.fall_ms)
            vacant = [e for e in mine if e.state == STATE_VACANT and low <= e.time_ms <= high]
            if len(vacant) != 1:
                episode.problems.append("%d vacant reports near the departure" % len(vacant))
            expected += len(vacant[:1])
        others = len(mine) - expected
        if others > 0:
            episode.problems.append("%d other events" % others)
        episode.correct = not episode.problems
    return episodes


def false_occupied(events):
    """Return the number of `occupied` reports (each one is false in a negative file)."""
    return sum(1 for event in events if event.state == STATE_OCCUPIED)
