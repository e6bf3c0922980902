"""The call signatures a loss may have, and the probe layout of each (docs/REGRESSION.md, "Ready signatures").

A layout stacks the ``n_points`` points a loss call needs, says which pairs each anchor treats as positives
and negatives, which points receive gradient (docs/THEORY.md §5a, gradient routing), and how the stacked
points become the loss's arguments. Points of several views are stacked view by view: point ``v N + s`` is
view ``v`` of sample ``s``.

| form | call | positives of an anchor |
|---|---|---|
| ``two_view`` | ``loss(z0, z1)`` | the other view |
| ``per_anchor`` | ``loss(query, positive, negatives)`` | ``positive[i]`` |
| ``queue`` | ``loss(q, k, queue)``, queue (K, D) or, ``transposed_bank``, (D, K) | ``k[i]`` |
| ``bank`` | ``loss(z, indexes, bank)``, bank (M, D) | ``bank[indexes[i]]`` |
| ``concat`` | ``loss(z)``, z (V N, D), views concatenated | the sample's other views |
| ``indexes`` | ``loss(z, indexes)``, z (V N, D), one index (or class label) per row | rows with the same index |
| ``views`` | ``loss(z)``, z (N, V, D) | the sample's other views |
| ``views_labels`` | ``loss(z, labels)``, z (N, V, D), labels (N,) | every view of every sample with the same label |
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dualnet_ssl.errors import BadInput

FORMS = ("two_view", "per_anchor", "queue", "bank", "concat", "indexes", "views", "views_labels")

BANK_FORMS = ("per_anchor", "queue", "bank")
"""Forms whose negatives are points of their own (a bank, a queue): they may be declared detached."""

LABEL_FORMS = ("concat", "indexes", "views", "views_labels")
"""Forms whose positives are given by a label per point, so that an anchor may have several."""

INPUTS = {"two_view": ("z0", "z1"), "per_anchor": ("query", "positive", "negatives"), "queue": ("q", "k", "queue"),
          "bank": ("z", "bank"), "concat": ("z",), "indexes": ("z",), "views": ("z",), "views_labels": ("z",)}
"""The names of each form's point arguments, in call order: what ``normalises`` and ``unit_inputs`` may list."""


@dataclass(frozen=True)
class Layout:
    """Where the probe's points go in the loss call, which pairs the loss declares, where gradient flows.

    ``anchors (A,)``, ``positives (A, P)`` and ``negatives (A, H)`` index the ``n_points`` stacked points;
    ``groups (n_points,)`` gives each point's sample or class (positives share one); ``live (n_points,)``
    marks the points that receive gradient; ``labels`` is what the loss receives as indexes or labels.
    """

    form: str
    n_samples: int
    n_points: int
    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    groups: torch.Tensor
    live: torch.Tensor
    neg_shape: tuple[int, ...] = ()
    n_views: int = 2
    labels: torch.Tensor | None = None
    transposed_bank: bool = False

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stacked points (n_points, D) -> the loss's arguments."""
        n, form = self.n_samples, self.form
        if form == "two_view":
            return z[:n], z[n:]
        if form == "per_anchor":
            return z[:n], z[n:2 * n], z[2 * n:].reshape(*self.neg_shape, z.shape[-1])
        if form == "queue":
            return z[:n], z[n:2 * n], (z[2 * n:].T if self.transposed_bank else z[2 * n:])
        if form == "bank":
            return z[:n], self.labels, z[n:]
        if form == "concat":
            return (z,)
        if form == "indexes":
            return z, self.labels
        stacked = z.reshape(self.n_views, n, z.shape[-1]).transpose(0, 1)
        return (stacked,) if form == "views" else (stacked, self.labels)

    def join(self, *args: torch.Tensor) -> torch.Tensor:
        """The point arguments of ``two_view``/``per_anchor``/``concat`` -> stacked points; inverts ``split``."""
        if self.form not in ("two_view", "per_anchor", "concat"):
            raise BadInput(f"join is defined for the forms two_view, per_anchor and concat, not {self.form!r}")
        return torch.cat([a.reshape(-1, a.shape[-1]) for a in args])

    def roles(self) -> torch.Tensor:
        """(n, n) symmetric: +1 on declared positive pairs, -1 on declared negatives, 0 elsewhere."""
        roles = torch.zeros(self.n_points, self.n_points, dtype=torch.long)
        for cols, sign in ((self.positives, 1), (self.negatives, -1)):
            rows = self.anchors[:, None].expand_as(cols)
            roles[rows, cols] = sign
            roles[cols, rows] = sign
        return roles

    def input_points(self) -> dict[str, torch.Tensor]:
        """Each point argument's name (``INPUTS``) -> the stacked points it holds."""
        names, n = INPUTS[self.form], self.n_samples
        if len(names) == 1:
            return {names[0]: torch.arange(self.n_points)}
        bounds = (0, n, 2 * n, self.n_points) if len(names) == 3 else ((0, n, self.n_points) if self.form == "bank"
                                                                        else (0, n, 2 * n))
        return {name: torch.arange(bounds[k], bounds[k + 1]) for k, name in enumerate(names)}

    @property
    def routed(self) -> bool:
        """True when some point receives no gradient by declaration (docs/THEORY.md §5a)."""
        return not bool(self.live.all())


def all_but_one(n: int) -> torch.Tensor:
    """(n, n-1): row j lists 0..n-1 without j."""
    points = torch.arange(n)
    return torch.stack([torch.cat([points[:j], points[j + 1:]]) for j in range(n)])


def _live(n_points: int, anchors: torch.Tensor, gradient_to: str, detached: torch.Tensor | None) -> torch.Tensor:
    live = torch.zeros(n_points, dtype=torch.bool)
    if gradient_to == "anchors":
        live[anchors] = True
    else:
        live[:] = True
        if detached is not None:
            live[detached] = False
    return live


def two_view_layout(n: int, symmetric: bool, same_view_negatives: bool, gradient_to: str) -> Layout:
    points = torch.arange(2 * n)
    anchors = points if symmetric else points[:n]
    sample, view = anchors % n, anchors // n
    others = all_but_one(n)
    negatives = others[sample] + n * (1 - view)[:, None]                                 # other view
    if same_view_negatives:
        negatives = torch.cat([negatives, others[sample] + n * view[:, None]], dim=1)
    return Layout("two_view", n, 2 * n, anchors, ((anchors + n) % (2 * n))[:, None], negatives, points % n,
                  _live(2 * n, anchors, gradient_to, None))


def bank_layout(form: str, n: int, mode: str, n_negatives: int, gradient_to: str, detached_negatives: bool,
                transposed_bank: bool) -> Layout:
    """``per_anchor``/``queue``: N queries, N positives, then the negatives; ``bank``: N queries, then a bank
    of N + n_negatives rows whose row ``indexes[i]`` is query i's positive."""
    queries = torch.arange(n)
    if form == "bank":
        size = n + n_negatives
        rows = torch.arange(size)
        indexes = size - 1 - queries                                   # not the diagonal: order matters
        negatives = torch.stack([n + rows[rows != indexes[i]] for i in range(n)])
        groups = torch.cat([queries, n + rows])
        groups[n + indexes] = queries
        live = _live(n + size, queries, gradient_to, n + rows if detached_negatives else None)
        return Layout(form, n, n + size, queries, (n + indexes)[:, None], negatives, groups, live, labels=indexes)
    if mode == "unpaired" or form == "queue":
        negatives, neg_shape = (2 * n + torch.arange(n_negatives)).expand(n, n_negatives), (n_negatives,)
    else:
        negatives, neg_shape = 2 * n + torch.arange(n * n_negatives).reshape(n, n_negatives), (n, n_negatives)
    n_neg = negatives.unique().numel()
    groups = torch.cat([queries, queries, n + torch.arange(n_neg)])
    live = _live(2 * n + n_neg, queries, gradient_to, 2 * n + torch.arange(n_neg) if detached_negatives else None)
    return Layout(form, n, 2 * n + n_neg, queries, (n + queries)[:, None], negatives, groups, live, neg_shape,
                  transposed_bank=transposed_bank)


def label_layout(form: str, n: int, n_views: int, per_class: int, symmetric: bool, gradient_to: str) -> Layout:
    """V views of N samples; sample ``s`` has class ``s % (N / per_class)``, so classes interleave. Every
    point is an anchor (``symmetric``) or only view 0's (SupCon's ``contrast_mode="one"``)."""
    classes = n // per_class
    sample_class = classes - 1 - torch.arange(n) % classes          # labels neither sorted nor 0..N-1 in order
    groups = sample_class.repeat(n_views)
    points = torch.arange(n_views * n)
    anchors = points if symmetric else points[:n]
    same = groups[anchors][:, None] == groups[None, :]
    positives = torch.stack([points[same[a] & (points != anchors[a])] for a in range(len(anchors))])
    negatives = torch.stack([points[~same[a]] for a in range(len(anchors))])
    labels = groups if form == "indexes" else (sample_class if form == "views_labels" else None)
    return Layout(form, n, n_views * n, anchors, positives, negatives, groups,
                  _live(n_views * n, anchors, gradient_to, None), n_views=n_views, labels=labels)


def unequal_classes_layout(form: str, n: int, n_views: int, symmetric: bool, gradient_to: str) -> Layout:
    """``indexes``/``views_labels`` with classes of unequal sizes (1, 2, 3, 1, 2, ... samples), so anchors have
    unequal numbers of positives. Ragged: ``positives`` and ``negatives`` are empty (A, 0); an anchor's positives
    are the other points of its group, its negatives every point of another group."""
    sizes, left = [], n
    while left:
        sizes.append(min(1 + len(sizes) % 3, left))
        left -= sizes[-1]
    sample_class = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).flip(0)
    groups = sample_class.repeat(n_views)
    points = torch.arange(n_views * n)
    anchors = points if symmetric else points[:n]
    empty = torch.zeros(len(anchors), 0, dtype=torch.long)
    labels = groups if form == "indexes" else sample_class
    return Layout(form, n, n_views * n, anchors, empty, empty, groups, _live(n_views * n, anchors, gradient_to, None),
                  n_views=n_views, labels=labels)


def samples_in(form: str, args: tuple, n_views: int) -> int:
    """The number of samples N in a call's arguments (the inverse of the layouts above)."""
    first = args[0]
    if form in ("concat", "indexes"):
        return first.shape[0] // n_views
    return first.shape[0]
