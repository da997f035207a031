"""Keypoint schemas: names, left/right partners, skeleton, OKS sigmas, body halves, PCK normaliser.

Schemas are YAML files that name keypoints rather than number them, so a typo is caught by name.
Built-in ones live in `configs/schemas/`; `from_data` builds one from a COCO category. Names are compared
across data sets through `keypoint_key` (case, separators, camelCase, side/limb abbreviations, token order),
so a data set that spells a shipped schema's keypoints its own way is recognised, and weights trained on one
schema transfer to another keypoint by keypoint.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cattlepose.core.errors import UserError
from cattlepose.core.resources import configs_dir
from cattlepose.core.yamlfile import load_yaml

DEFAULT_SIGMA = 0.079  # COCO's shoulder sigma: a middling value for joints nobody has measured


@dataclass(frozen=True)
class KeypointSchema:
    name: str
    keypoints: tuple[str, ...]
    flip_index: tuple[int, ...]  # flip_index[k] = the keypoint k becomes after a horizontal mirror
    skeleton: tuple[tuple[int, int], ...]  # 0-indexed pairs
    sigmas: tuple[float, ...]
    upper: tuple[int, ...]
    lower: tuple[int, ...]
    pck_pair: tuple[int, int] | None  # normaliser of torso PCK; None means only box PCK is defined
    # set when a from_data schema was recognised as a shipped one: its name, and (data name, shipped name)
    # for every keypoint in the data's order
    recognised_as: str | None = None
    name_map: tuple[tuple[str, str], ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise UserError(f"unknown keypoint '{name}'{_suggest(name, self.keypoints)}") from None

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [(k, j) for k, j in enumerate(self.flip_index) if k < j]

    def to_dict(self) -> dict[str, Any]:
        n = self.keypoints
        out: dict[str, Any] = {
            "name": self.name,
            "keypoints": list(n),
            "pairs": [[n[a], n[b]] for a, b in self.pairs],
            "skeleton": [[n[a], n[b]] for a, b in self.skeleton],
            "sigmas": list(self.sigmas),
            "upper": [n[i] for i in self.upper],
            "lower": [n[i] for i in self.lower],
            "pck_normalizer": None if self.pck_pair is None else [n[i] for i in self.pck_pair],
        }
        if self.recognised_as is not None:
            # only for a recognised schema: a named or unrecognised one has nothing to map
            out["recognised_as"] = self.recognised_as
            out["name_map"] = dict(self.name_map)
        return out


def _suggest(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def builtin_schemas() -> list[str]:
    return sorted(p.stem for p in (configs_dir() / "schemas").glob("*.yaml"))


def load_schema(spec: str | Path) -> KeypointSchema:
    """A built-in schema by name (`adk17`) or a schema YAML file by path."""
    spec_str = str(spec)
    builtin = configs_dir() / "schemas" / f"{spec_str}.yaml"
    if builtin.is_file():
        path = builtin
    elif Path(spec_str).is_file():
        path = Path(spec_str)
    else:
        raise UserError(
            f"no schema named '{spec_str}': use one of {', '.join(builtin_schemas())}, "
            "'from_data' for a COCO file, or the path of a schema YAML file",
            field="data.schema",
        )
    return schema_from_dict(load_yaml(path, "schema file"), source=path)


def schema_from_dict(raw: Any, source: str | Path = "<schema>") -> KeypointSchema:
    """Validate a schema mapping (names, not numbers) and build the schema; each failure names the field."""
    if not isinstance(raw, dict):
        raise UserError("a schema must be a mapping", path=source)
    known = {
        "name", "keypoints", "pairs", "flip_index", "skeleton", "sigmas", "upper", "lower", "pck_normalizer",
        "recognised_as", "name_map",
    }  # fmt: skip
    for key in raw:
        if key not in known:
            raise UserError(f"unknown key '{key}'{_suggest(str(key), sorted(known))}", path=source, field=key)
    names = raw.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError("must be a non-empty list of keypoint names", path=source, field="keypoints")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"duplicate keypoint names {dup}", path=source, field="keypoints")
    f = _Fields(names, source)
    for part in ("upper", "lower"):
        if not isinstance(raw.get(part) or [], list):
            raise UserError("must be a list of keypoint names", path=source, field=part)
    recognised = raw.get("recognised_as")
    if recognised is not None and not isinstance(recognised, str):
        raise UserError("must be the name of a shipped schema", path=source, field="recognised_as")
    name_map = raw.get("name_map") or {}
    if not isinstance(name_map, dict) or not all(isinstance(v, str) for v in name_map.values()):
        raise UserError("must map keypoint names to shipped names", path=source, field="name_map")
    for key in name_map:
        f.index(key, "name_map")
    return KeypointSchema(
        name=str(raw.get("name") or Path(str(source)).stem),
        keypoints=tuple(names),
        flip_index=tuple(f.flip(raw.get("pairs"), raw.get("flip_index"))),
        skeleton=tuple(f.edges(raw.get("skeleton"))),
        sigmas=f.sigmas(raw.get("sigmas")),
        upper=tuple(f.index(n, "upper") for n in raw.get("upper") or []),
        lower=tuple(f.index(n, "lower") for n in raw.get("lower") or []),
        pck_pair=f.normaliser(raw.get("pck_normalizer")),
        recognised_as=recognised,
        name_map=tuple((n, name_map[n]) for n in names if n in name_map),
    )


class _Fields:
    """The keypoint names of a schema being read, and the checks of every field that refers to them."""

    def __init__(self, names: list[str], source: str | Path):
        self.names, self.source, self.k = names, source, len(names)

    def index(self, name: Any, field: str) -> int:
        if isinstance(name, int) and not isinstance(name, bool):
            if not 0 <= name < self.k:
                raise UserError(f"index {name} out of range 0..{self.k - 1}", path=self.source, field=field)
            return name
        if name not in self.names:
            raise UserError(f"unknown keypoint '{name}'{_suggest(str(name), self.names)}", path=self.source,
                            field=field)  # fmt: skip
        return self.names.index(name)

    def flip(self, pairs: Any, flip_index: Any) -> list[int]:
        """The flip index from left/right `pairs` of names, or from a numeric `flip_index`."""
        if pairs and flip_index is not None:
            raise UserError("give either 'pairs' or 'flip_index', not both", path=self.source, field="flip_index")
        if flip_index is not None:
            return _flip_from_index(flip_index, self.names, self.source)
        flip = list(range(self.k))
        if not isinstance(pairs or [], list):
            raise UserError("must be a list of [left, right] pairs", path=self.source, field="pairs")
        for i, pair in enumerate(pairs or []):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise UserError("each pair must be [left, right]", path=self.source, field=f"pairs[{i}]")
            a, b = self.index(pair[0], f"pairs[{i}]"), self.index(pair[1], f"pairs[{i}]")
            if a == b or flip[a] != a or flip[b] != b:
                raise UserError(
                    f"'{self.names[a]}' and '{self.names[b]}' cannot be partners: each keypoint has at most one "
                    "partner and is not its own",
                    path=self.source,
                    field=f"pairs[{i}]",
                )
            flip[a], flip[b] = b, a
        return flip

    def edges(self, raw: Any) -> list[tuple[int, int]]:
        if not isinstance(raw or [], list):
            raise UserError("must be a list of [a, b] edges", path=self.source, field="skeleton")
        out = []
        for i, edge in enumerate(raw or []):
            if not isinstance(edge, (list, tuple)) or len(edge) != 2:
                raise UserError("each edge must be [a, b]", path=self.source, field=f"skeleton[{i}]")
            out.append((self.index(edge[0], f"skeleton[{i}]"), self.index(edge[1], f"skeleton[{i}]")))
        return out

    def sigmas(self, raw: Any) -> tuple[float, ...]:
        sigmas = [DEFAULT_SIGMA] * self.k if raw is None else raw
        if not isinstance(sigmas, list) or len(sigmas) != self.k:
            got = len(sigmas) if isinstance(sigmas, list) else type(sigmas).__name__
            raise UserError(f"needs {self.k} sigmas, one per keypoint; got {got}", path=self.source, field="sigmas")
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in sigmas):
            raise UserError("every sigma must be a positive number", path=self.source, field="sigmas")
        return tuple(float(s) for s in sigmas)

    def normaliser(self, raw: Any) -> tuple[int, int] | None:
        if raw is None:
            return None
        if not (isinstance(raw, (list, tuple)) and len(raw) == 2):
            raise UserError("must be a pair of keypoint names", path=self.source, field="pck_normalizer")
        pair = (self.index(raw[0], "pck_normalizer"), self.index(raw[1], "pck_normalizer"))
        if pair[0] == pair[1]:
            raise UserError("needs two different keypoints", path=self.source, field="pck_normalizer")
        return pair


def _flip_from_index(raw: Any, names: Sequence[str], source: str | Path) -> list[int]:
    """A numeric flip index (as MMPose and others publish it), checked: K entries, in range, symmetric."""
    k = len(names)
    if not isinstance(raw, list) or len(raw) != k:
        got = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise UserError(f"needs {k} entries, one per keypoint; got {got}", path=source, field="flip_index")
    for i, j in enumerate(raw):
        if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < k:
            raise UserError(f"entry {i} is {j!r}; must be an index in 0..{k - 1}", path=source, field="flip_index")
    for i, j in enumerate(raw):
        if raw[j] != i:
            raise UserError(
                f"not symmetric: '{names[i]}' swaps with '{names[j]}', but '{names[j]}' swaps with '{names[raw[j]]}'",
                path=source,
                field="flip_index",
            )
    return list(raw)


# Substitutions that turn a keypoint name into its mirror partner, tried on lower-cased names.
_SIDE_PATTERNS = [
    (re.compile(r"(^|[_\-\s])left(?=$|[_\-\s])"), r"\1right"),
    (re.compile(r"(^|[_\-\s])right(?=$|[_\-\s])"), r"\1left"),
    (re.compile(r"^left"), "right"),
    (re.compile(r"^right"), "left"),
    (re.compile(r"(^|[_\-\s])l(?=$|[_\-\s])"), r"\1r"),
    (re.compile(r"(^|[_\-\s])r(?=$|[_\-\s])"), r"\1l"),
    (re.compile(r"^near"), "off"),  # horse anatomy: near side = left, off side = right
    (re.compile(r"^off"), "near"),
    # last resort, for names run together (frontLeftPaw); a match still needs the partner name to exist
    (re.compile(r"left"), "right"),
    (re.compile(r"right"), "left"),
]


def infer_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """Left/right partners from names: left_/right_, L_/R_, _left/_right, leftX/rightX, xLeftY/xRightY,
    NearX/OffX (horses). Case-insensitive; a name is paired only when its mirrored name exists."""
    lower = [n.lower() for n in names]
    pairs: list[tuple[int, int]] = []
    taken: set[int] = set()
    for i, n in enumerate(lower):
        if i in taken:
            continue
        for pattern, repl in _SIDE_PATTERNS:
            partner = pattern.sub(repl, n, count=1)
            if partner != n and partner in lower:
                j = lower.index(partner)
                if j != i and j not in taken:
                    pairs.append((i, j))
                    taken.update((i, j))
                    break
    return pairs


def schema_from_coco_category(category: dict[str, Any], source: str | Path = "<coco>") -> KeypointSchema:
    """Build a schema from a COCO category's `keypoints` and 1-indexed `skeleton`.

    Left/right partners are inferred from the names. When the names are exactly those of a built-in schema
    (AP-10K data, ADK files), its OKS sigmas, body halves and PCK normaliser are used; otherwise every sigma
    is DEFAULT_SIGMA, with a warning, and only box-normalised PCK is defined.
    """
    names = category.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError(
            "category has no 'keypoints' name list, so it cannot serve as a schema",
            path=source,
            field="categories[].keypoints",
        )
    raw_edges = category.get("skeleton") or []
    if not isinstance(raw_edges, list):
        raise UserError("skeleton must be a list of [a, b] pairs", path=source, field="categories[].skeleton")
    k = len(names)
    numbers = [e for edge in raw_edges if isinstance(edge, (list, tuple)) for e in edge if isinstance(e, int)]
    # COCO skeletons count from 1; some converted data sets count from 0, which shows as a 0 and no K
    base = 0 if numbers and min(numbers) == 0 and max(numbers) < k else 1
    if base == 0:
        warnings.warn(f"{source}: the skeleton counts keypoints from 0, not 1 as COCO does; read it so", stacklevel=2)
    skeleton = []
    for i, edge in enumerate(raw_edges):
        ok = isinstance(edge, (list, tuple)) and len(edge) == 2
        ok = ok and all(isinstance(e, int) and not isinstance(e, bool) and base <= e < k + base for e in edge)
        if not ok:
            raise UserError(
                f"skeleton edge {edge!r} must be two keypoint numbers in {base}..{k - 1 + base}",
                path=source,
                field=f"categories[].skeleton[{i}]",
            )
        skeleton.append([names[edge[0] - base], names[edge[1] - base]])
    raw: dict[str, Any] = {
        "name": str(category.get("name") or "from_data"),
        "keypoints": list(names),
        "pairs": [[names[a], names[b]] for a, b in infer_pairs(names)],
        "skeleton": skeleton,
    }
    recognised = recognise_schema(names)
    if recognised is not None:
        raw.update(_carry_over(*recognised))
    else:
        warnings.warn(
            f"{source}: schema built from the data has no OKS sigmas; using {DEFAULT_SIGMA} for every keypoint",
            stacklevel=2,
        )
    return schema_from_dict(raw, source=source)


def _carry_over(shipped: KeypointSchema, to_shipped: dict[str, str]) -> dict[str, Any]:
    """The shipped schema's partners, skeleton, sigmas, halves and PCK normaliser, in the data's names and order."""
    to_data = {b: a for a, b in to_shipped.items()}
    d = shipped.to_dict()

    names = list(to_shipped)
    sigma = dict(zip(shipped.keypoints, shipped.sigmas, strict=True))
    return {
        "pairs": [[to_data[a], to_data[b]] for a, b in d["pairs"]],
        "skeleton": [[to_data[a], to_data[b]] for a, b in d["skeleton"]],
        "sigmas": [sigma[to_shipped[n]] for n in names],
        "upper": [to_data[n] for n in d["upper"]],
        "lower": [to_data[n] for n in d["lower"]],
        "pck_normalizer": None if d["pck_normalizer"] is None else [to_data[n] for n in d["pck_normalizer"]],
        "recognised_as": shipped.name,
        "name_map": dict(to_shipped),
    }


# Spellings of one idea in keypoint names of public data sets: sides, legs, and the ear/tail landmarks.
_TOKEN_SYNONYMS = {
    "l": "left",
    "r": "right",
    "f": "front",
    "fore": "front",
    "b": "back",
    "hind": "back",
    "rear": "back",
    "earbase": "ear",
    "tailroot": "tailbase",
}
# camelCase and CapWords boundaries: leftEar, L_EarBase, LEye
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def keypoint_key(name: str) -> tuple[str, ...]:
    """A keypoint name reduced to what it means, for matching names across data sets.

    Case, separators and camelCase are ignored; l/r/f/b/fore/hind/rear become left/right/front/back; "ear base"
    is the ear and "tail base"/"root of tail" one landmark; token order does not matter, so `L_F_Elbow`,
    `left_front_elbow` and `FrontLeftElbow` share a key.
    """
    tokens = [_TOKEN_SYNONYMS.get(t, t) for t in _SEPARATORS.split(_CAMEL.sub(" ", name).lower()) if t]
    bag = set(tokens)
    if "tail" in bag and bag & {"base", "root"}:
        # tail base, base of tail, root of tail: one landmark, spelled as the one-word form
        tokens = [t for t in tokens if t not in ("tail", "base", "root", "of")] + ["tailbase"]
    elif "ear" in bag and "base" in bag:
        tokens = [t for t in tokens if t != "base"]
    return tuple(sorted(tokens)) or (name,)


def match_keypoint_names(source: Sequence[str], target: Sequence[str]) -> dict[str, str]:
    """target name -> source name for the keypoints both lists name, in target order.

    Equal names match first; then names with the same `keypoint_key`, one to one: a key that two names of
    either list share is ambiguous and matches nothing.
    """
    pairs = {t: t for t in target if t in set(source)}
    taken = set(pairs.values())

    def by_key(names: Sequence[str], skip: set[str]) -> dict[tuple[str, ...], list[str]]:
        out: dict[tuple[str, ...], list[str]] = {}
        for n in names:
            if n not in skip:
                out.setdefault(keypoint_key(n), []).append(n)
        return out

    src_keys = by_key(source, taken)
    for key, names in by_key(target, set(pairs)).items():
        candidates = src_keys.get(key, [])
        if len(names) == 1 and len(candidates) == 1:
            pairs[names[0]] = candidates[0]
    return {t: pairs[t] for t in target if t in pairs}


def recognise_schema(names: Sequence[str]) -> tuple[KeypointSchema, dict[str, str]] | None:
    """The shipped schema whose keypoints are exactly `names` up to spelling and order, with the map
    data name -> shipped name; None unless every name on both sides has its partner (no partial matches)."""
    if len(set(names)) != len(names):
        return None
    for spec in builtin_schemas():
        shipped = load_schema(spec)
        if shipped.num_keypoints != len(names):
            continue
        to_shipped = match_keypoint_names(shipped.keypoints, names)
        if len(to_shipped) == len(names):
            return shipped, to_shipped
    return None


def recognition_note(schema: KeypointSchema) -> str | None:
    """One log line when a from_data schema was recognised, naming the keypoints spelled differently."""
    if schema.recognised_as is None:
        return None
    renamed = [f"{a}->{b}" for a, b in schema.name_map if a != b]
    note = f"keypoints recognised as {schema.recognised_as} ({schema.num_keypoints} matched by name"
    if renamed:
        note += ": " + ", ".join(renamed[:6]) + (f", ... {len(renamed) - 6} more" if len(renamed) > 6 else "")
    return note + "; the data's keypoint order is kept)"
