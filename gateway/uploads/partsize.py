"""Part sizing for S3 multipart uploads (pure functions).

S3 allows at most 10,000 parts of 5 MiB to 5 GiB each (the last may be
smaller); some S3-compatible stores allow fewer parts (``GATEWAY_S3_MAX_PARTS``).
A part is held in memory while it uploads, so when the length is known the part
size is the preferred one, or larger when the file needs it, and fixed for the
whole upload. A part larger than a buffer of the memory budget is a *segment*:
it is written as a multipart upload of its own, in *sub-parts* that do fit a
buffer, and then copied into its place inside the store (UploadPartCopy). The
sub-part size is fixed with the plan, so replicas with other budgets agree.
When the length is not known, parts start small and double every 1,000 parts
(never past a buffer), so small files stay cheap and long streams still fit.
The size of part ``n`` (and of its sub-part ``m``) is a function of the plan
and the length alone, which lets any replica resume an upload from the parts
the store lists.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
DEFAULT_PART = 16 * MiB
# A store spends a fixed cost on every part, so a request long enough takes larger parts:
# fewer requests to a paid store, and on SeaweedFS here 1 to 3 % faster per GiB than
# 16 MiB parts (three interleaved pairs of 1 GiB tus uploads).
LARGE_PART = 32 * MiB
GROWTH_EVERY = 1_000


class TooLargeForParts(ValueError):
    """The length needs parts bigger than the store's part limits allow."""


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def max_part_for_budget(budget: int) -> int:
    """Largest part the budget allows: two must fit, so one can upload while the next fills."""
    return max(MIN_PART, min(MAX_PART, (budget // 2) // MiB * MiB))


@dataclass(frozen=True)
class PartPlan:
    """How an upload is cut into parts. ``fixed`` when the length was known."""

    base: int
    cap: int
    fixed: bool
    # Sub-part size when a part (``base``) is larger than a buffer; 0: no segments.
    sub: int = 0

    def size_of(self, number: int) -> int:
        """Size of full part ``number`` (1-based)."""
        if number < 1:
            raise ValueError("part numbers start at 1")
        if self.fixed:
            return self.base
        doublings = min((number - 1) // GROWTH_EVERY, 20)
        return min(self.cap, self.base << doublings)

    def capacity(self, parts: int = MAX_PARTS) -> int:
        """Bytes that ``parts`` parts of this plan can hold."""
        if self.fixed:
            return self.base * parts
        blocks, rest = divmod(parts, GROWTH_EVERY)
        full = sum(self.size_of(n) for n in range(1, blocks * GROWTH_EVERY + 1, GROWTH_EVERY))
        return full * GROWTH_EVERY + rest * self.size_of(blocks * GROWTH_EVERY + 1)

    def part_length(self, number: int, length: int | None) -> int:
        """How many bytes part ``number`` holds: a full part, or what is left of ``length``."""
        size = self.size_of(number)
        if length is None:
            return size
        return max(0, min(size, length - offset_of_part(self, number)))

    def segmented(self, number: int, length: int | None) -> bool:
        """Whether part ``number`` is written as a segment (more than one sub-part)."""
        return self.sub > 0 and self.part_length(number, length) > self.sub

    def sub_length(self, number: int, sub: int, length: int | None) -> int:
        """How many bytes sub-part ``sub`` (1-based) of segment ``number`` holds."""
        if sub < 1:
            raise ValueError("sub-part numbers start at 1")
        return max(0, min(self.sub, self.part_length(number, length) - (sub - 1) * self.sub))

    def sub_count(self, number: int, length: int | None) -> int:
        """How many sub-parts segment ``number`` has."""
        return -(-self.part_length(number, length) // self.sub)

    def to_json(self) -> dict[str, int | bool]:
        data: dict[str, int | bool] = {"base": self.base, "cap": self.cap, "fixed": self.fixed}
        if self.sub:
            data["sub"] = self.sub
        return data

    @classmethod
    def from_json(cls, data: dict[str, int | bool]) -> PartPlan:
        return cls(
            base=int(data["base"]),
            cap=int(data["cap"]),
            fixed=bool(data["fixed"]),
            sub=int(data.get("sub", 0)),
        )


def largest_part(budget: int, parts: int = MAX_PARTS) -> int:
    """The largest part a plan may have: 5 GiB, or ``parts`` sub-parts of a buffer's size."""
    return min(MAX_PART, max_part_for_budget(budget) * parts)


def plan_parts(
    length: int | None, budget: int, preferred: int = DEFAULT_PART, parts: int = MAX_PARTS
) -> PartPlan:
    """Choose the part plan for an upload of ``length`` bytes (None = unknown), in at
    most ``parts`` parts (and sub-parts per segment)."""
    if parts < 1:
        raise ValueError("a multipart upload has at least one part")
    cap = max_part_for_budget(budget)
    preferred = max(MIN_PART, min(preferred, cap))
    if length is None:
        return PartPlan(base=preferred, cap=cap, fixed=False)
    if length < 0:
        raise ValueError("length must not be negative")
    size = max(preferred, _round_up(max(1, -(-length // parts)), MiB))
    if size <= cap:
        return PartPlan(base=size, cap=size, fixed=True)
    sub = max(preferred, _round_up(-(-size // parts), MiB))
    if size > MAX_PART or sub > cap:
        raise TooLargeForParts(
            f"{length} bytes need parts of {size} bytes, more than {parts:,} parts "
            f"of at most {largest_part(budget, parts)} bytes hold"
        )
    return PartPlan(base=size, cap=size, fixed=True, sub=sub)


def part_for_request(body: int | None) -> int:
    """The part size to prefer for an upload whose first request declares ``body`` bytes.

    A request declaring at least two large parts (a whole-file PUT, a tus PATCH
    of 64 MiB or more) takes :data:`LARGE_PART`: when it or a later request ends
    mid-part, the tail kept until the next request is at most half of what that
    request sent. Shorter requests, and bodies of unknown length, keep
    :data:`DEFAULT_PART`, which the browser page and the CLI send one per
    request, so their requests leave no tail at all.
    """
    if body is not None and body >= 2 * LARGE_PART:
        return LARGE_PART
    return DEFAULT_PART


def offset_of_part(plan: PartPlan, number: int) -> int:
    """Byte offset at which full part ``number`` starts."""
    if plan.fixed:
        return plan.base * (number - 1)
    return sum(plan.size_of(n) for n in range(1, number))
