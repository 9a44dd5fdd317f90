"""Code generation: the lowered, scheduled, planned model as view records, and the views as
files.

Python decides every number and every C name (kernels lowers each layer to a typed record,
schedule orders the steps, planner places the buffers); this module only collects them into
one record per file, and the Jinja2 templates in templates/ lay them out.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from . import __version__
from .c_types import c_type, float_literal
from .errors import McugenError
from .ir import Graph, TableLookup
from .kernels import Layer
from .kernels.cmsis_nn import CmsisPath
from .kernels.quantize import AffineQuantize, affine_quantize
from .kernels.variant import ConstArray, Isa, LayerNames, Params, const_arrays
from .planner import ALIGNMENT, Plan
from .resources import templates_dir
from .schedule import (Repeat, Schedule, Shift, Step, advanced, column_layers, moves_rows,
                       row_bytes, scratch_id)
from .sharing import function_key, sharing_groups

if TYPE_CHECKING:
    from .selftest import Selftest  # which imports this module, through compile

C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern
float for goto if inline int long register restrict return short signed sizeof static struct
switch typedef union unsigned void volatile while _Bool _Complex _Imaginary main""".split())


# Headers a firmware (or the generated C) includes with <...>: a model named after one would
# shadow it, since a build puts the model's folder on the include path (-I). Compared without
# case, for case-insensitive file systems.
SHADOWED_HEADERS = frozenset("""assert complex ctype errno fenv float inttypes iso646 limits locale
math setjmp signal stdalign stdarg stdatomic stdbit stdbool stdckdint stddef stdint stdio stdlib
stdnoreturn string tgmath threads time uchar wchar wctype arm_acle arm_mve arm_math
arm_nnfunctions arm_nnsupportfunctions arm_nn_types arm_nn_math_types cmsis_compiler""".split())
# C11 and C23 keywords beyond C99's (a C++ or C23 build of the headers must still parse).
C_LATER_KEYWORDS = frozenset("""_Alignas _Alignof _Atomic _Generic _Noreturn _Static_assert
_Thread_local alignas alignof bool constexpr false nullptr static_assert thread_local true
typeof typeof_unqual""".split())
MAX_NAME_LENGTH = 64


def check_model_name(name: str) -> None:
    """The name prefixes every C symbol and names the files: it must be a C identifier, not a
    keyword, not reserved (a leading underscore is the implementation's at file scope), not a
    standard header's name, and short enough for any file system and compiler."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in C_KEYWORDS \
            or name in C_LATER_KEYWORDS or keyword.iskeyword(name) or name.startswith("_"):
        raise McugenError(f"--name {name!r} is not usable as a C identifier prefix (letters, "
                          "digits and _, not starting with a digit or _, not a keyword)")
    if name.lower() in SHADOWED_HEADERS:
        raise McugenError(f"--name {name!r} would make {name}.h, which shadows the standard "
                          f"header <{name.lower()}.h>; choose another name")
    if len(name) > MAX_NAME_LENGTH:
        raise McugenError(f"--name is {len(name)} characters long; use at most "
                          f"{MAX_NAME_LENGTH}")


@dataclass(frozen=True)
class Pointer:
    """Where an operand of a step lives: the caller's input or output buffer, the arena at an
    offset, or a constant table."""

    base: str  # "input", "output", "arena" or "table"
    offset: int = 0
    table: str | None = None
    array: str = "arena"  # the arena array (one per RAM region with --ram-regions)
    ctype: str = "int8_t"  # the tensor's element type: the arena's int8_t, or a cast to it


@dataclass(frozen=True)
class TableArgument:
    """A constant table a layer function takes as an argument (so that layers of one shape
    share one function): the parameter's name and type, and the layer's own table."""

    parameter: str
    ctype: str
    array: ConstArray


@dataclass(frozen=True)
class ScalarArgument:
    """A per-layer scalar a shared layer function takes as an argument (a field its variant
    names in data_scalars): the parameter's name and the layer's own value."""

    parameter: str
    value: int


@dataclass(frozen=True)
class CParameter:
    """A data scalar in a shared function's record: prints as its parameter's name. Its value
    is not known when the C is generated, so Jinja arithmetic and tests on it raise."""

    name: str

    def __str__(self) -> str:
        return self.name

    def __bool__(self) -> bool:
        raise TypeError(f"{self.name} is a run-time value: a template cannot test it")


@dataclass(frozen=True)
class LayerView:
    """What a layer template needs: the lowered layer, its parameters (with its tables and
    data scalars renamed to the function's parameters when it shares a function), and the
    function that runs it, which the first layer of its key (sharing.function_key) defines
    and the others call."""

    layer: Layer
    comment: str
    names: LayerNames  # of the function that runs the layer
    params: Params  # the layer's parameter record, tables named as the function's parameters
    tables: tuple[TableArgument, ...]
    label: str  # "Layer 3", or "Layers 3, 5, 7" for a function they share
    defines_function: bool
    banded: bool = False  # runs in row bands: takes the first row each operand's buffer holds
    input_ctype: str = "int8_t"  # the element types of its input and output pointers
    output_ctype: str = "int8_t"
    scalars: tuple[ScalarArgument, ...] = ()  # its data scalars, when it shares a function
    # The numbers of output rows its function's calls compute, over every layer that calls
    # it (the schedule's steps); () where no schedule says: any number.
    call_rows: tuple[int, ...] = ()
    # Given column regions (its variant's `columns`): also takes its columns and the first
    # column each operand's buffer holds.
    columned: bool = False

    @property
    def index(self) -> int:
        return self.layer.index

    def pixels_left(self, block_pixels: int, width: int) -> frozenset[int]:
        """The pixels a call of its function may leave over after whole blocks of
        block_pixels, its rows being `width` pixels each: a kernel emits the code for these
        alone (a band schedule's calls of one row of 112 pixels leave one pixel in blocks of
        three, never two), where the compiler would see it only for constant rows."""
        if not self.call_rows:
            return frozenset(range(1, block_pixels))
        return frozenset(rows * width % block_pixels for rows in self.call_rows) - {0}

    @property
    def spans_rows(self) -> bool:
        """Whether a call of its function may compute several rows (when not known, yes): a
        planar pointwise layer's blocks can then end in the next row (its `straddle` code)."""
        return not self.call_rows or max(self.call_rows) > 1

    @property
    def variant(self):
        return self.layer.variant

    @property
    def has_scratch(self) -> bool:
        return self.layer.scratch_bytes > 0

    @property
    def opaque_operands(self) -> tuple[str, ...]:
        """The pointer parameters its function takes through MCUGEN_OPAQUE, an empty asm, on
        entry: every operand that may point into the arena. GCC 12 (x86-64 and Arm, -O2)
        propagates a static arena's address into a function called once (a .constprop
        clone); its induction-variable pass may then address one of these through another
        with no base left ("0 + ..."), which its pure-const and modref analyses take for a
        null dereference: the clone is judged to store nothing and its call is deleted.
        Every arena operand needs it (the output alone was not enough); the calls keep their
        constant arguments, and rows and tables still propagate."""
        binary = ("input2",) if self.variant.binary else ()
        scratch = ("scratch",) if self.has_scratch else ()
        return ("input", *binary, "output", *scratch)


@dataclass(frozen=True)
class MoveView:
    """Rows still to be read, moved to the start of their band buffer: by words
    (band_shift_words) where both ends are word-aligned and the bytes whole words, else by
    memmove (newlib's copies such a run a word at a time too, but at 13 instructions per 16
    bytes against 6 to 8; bytes at a time where it cannot prove the alignment)."""

    tensor: str
    target: Pointer
    source: Pointer
    bytes: int
    runs: Guard | None = None  # in a loop that folds a fill or drain: its iterations

    @property
    def by_words(self) -> bool:
        # Every arena offset is a multiple of the planner's ALIGNMENT (>= 4) from an arena
        # that is ALIGNMENT-aligned; in a loop a number is an Affine, checked for every i.
        return all(_multiple_of(n, 4) for n in (self.target.offset, self.source.offset,
                                                 self.bytes))


def _multiple_of(value, n: int) -> bool:
    """An integer, or every value of an Affine, a multiple of n."""
    if isinstance(value, Affine):
        return value.first % n == 0 and value.per % n == 0
    return value % n == 0


@dataclass(frozen=True)
class Affine:
    """A number in a loop's statement that changes with the iteration i: first + per * i.
    Prints as its C expression."""

    first: int
    per: int

    def __str__(self) -> str:
        if self.per == 0:
            return str(self.first)
        term = f"{abs(self.per)} * {LOOP_INDEX}"
        if self.first == 0:
            return term if self.per > 0 else f"-{term}"
        return f"{self.first} {'+' if self.per > 0 else '-'} {term}"

    def __bool__(self) -> bool:
        return bool(self.first or self.per)


LOOP_INDEX = "i"  # the loop variable of NAME_invoke's loops


@dataclass(frozen=True)
class Guard:
    """The iterations [first, last) of a loop of `count` in which a statement runs
    (schedule.Runs). Prints as the C condition (band_iteration in model.c.j2); false where the
    statement runs in every iteration (no condition)."""

    first: int
    last: int
    count: int

    def __str__(self) -> str:
        index = f"band_iteration({LOOP_INDEX})"  # each test its own: never threaded
        return " && ".join(([f"{index} >= {self.first}"] if self.first > 0 else []) +
                           ([f"{index} < {self.last}"] if self.last < self.count else []))

    def __bool__(self) -> bool:
        return self.first > 0 or self.last < self.count


@dataclass(frozen=True)
class StepView:
    """One call in NAME_invoke: a layer's function on its operands, for a range of rows, after
    the band buffer moves it needs; `written` and `output_bytes` are the bytes it writes."""

    layer: LayerView
    input: Pointer
    input2: Pointer | None
    output: Pointer
    scratch: Pointer | None
    rows: tuple[int, int] | None
    output_bytes: int
    origins: tuple[int, ...] | None = None
    moves: tuple[MoveView, ...] = ()
    written: Pointer | None = None  # the first byte written, when not the output's first
    # A layer given column regions (LayerView.columned): its columns, and the column each
    # operand's buffer starts at (schedule.Step.column_origins).
    columns: tuple[int, int] | None = None
    column_origins: tuple[int, ...] | None = None
    runs: Guard | None = None  # in a loop that folds a fill or drain: its call's iterations


@dataclass(frozen=True)
class LoopView:
    """A loop in NAME_invoke (schedule.Repeat): `count` iterations of the body's steps, whose
    numbers (rows, origins, offsets, bytes) are Affine in the iteration."""

    count: int
    body: tuple[StepView, ...]
    first_step: int  # the positions of its first and last steps in the schedule
    last_step: int
    guarded: bool = False  # a fill or drain folded in: statements under guards (runs)
    variable: str = LOOP_INDEX

    @property
    def groups(self) -> list[tuple[Guard | None, list[StepView]]]:
        """The body in runs of consecutive statements whose calls have one guard (None: every
        iteration): one `if` each, not one per statement (a pipeline's fill and drain guard
        whole stretches of the body alike). A move guarded otherwise than its call has its own
        `if` inside."""
        groups: list[tuple[Guard | None, list[StepView]]] = []
        for step in self.body:
            guard = step.runs or None
            if groups and groups[-1][0] == guard:
                groups[-1][1].append(step)
            else:
                groups.append((guard, [step]))
        return groups


@dataclass(frozen=True)
class ArenaView:
    """One static arena array: the only one, or one RAM region's, in its own section."""

    array: str
    size: int
    region: str | None = None  # the part's name for the region
    section: str | None = None
    macro: str | None = None  # NAME_ARENA_<REGION>_SIZE


def region_identifier(region: str) -> str:
    """A region's name as part of a C identifier: "AXI SRAM" -> "AXI_SRAM"."""
    return re.sub(r"[^A-Za-z0-9]+", "_", region).strip("_").upper()


def arena_views(plan: Plan, model: str) -> tuple[ArenaView, ...]:
    if plan.regions is None:
        return (ArenaView("arena", plan.arena_size),)
    views = []
    for region, size in plan.regions:
        ident = region_identifier(region)
        # .bss.*: without a rule of its own a linker script's *(.bss*) takes it (zeroed, no
        # flash); a rule for it placed before .bss puts it in the region.
        views.append(ArenaView(f"arena_{ident.lower()}", size, region,
                               f".bss.{model}_arena_{ident.lower()}",
                               f"{model.upper()}_ARENA_{ident}_SIZE"))
    return tuple(views)


@dataclass(frozen=True)
class ProfileView:
    """--profile: the layers' names (NAME_layer_names) and the counter NAME_invoke reads."""

    names: tuple[str, ...]
    systick: bool  # ARMv6-M: SysTick; later cores: the DWT's CYCCNT


def profile_view(graph: Graph, layers: tuple[Layer, ...], arch: str) -> ProfileView:
    """ARMv6-M has no DWT cycle counter (its DWT has none), so it counts with SysTick."""
    return ProfileView(tuple(layer_comment(layer, graph) for layer in layers),
                       systick=arch == "armv6-m")


@dataclass(frozen=True)
class ModelView:
    name: str
    upper: str
    source: str  # provenance line: what was compiled, with which options
    input_size: int  # elements
    output_size: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_ctype: str  # int8_t, uint8_t or float: NAME_input_t
    output_ctype: str
    input_scale: str | None  # C float literals; None for a float input or output
    output_scale: str | None
    input_zero_point: int | None
    output_zero_point: int | None
    input_affine: AffineQuantize | None  # NAME_quantize_input's cases (a quantized input)
    arena_size: int
    arenas: tuple[ArenaView, ...]
    layers: tuple[LayerView, ...]
    steps: tuple[StepView, ...]  # every step, unrolled
    program: tuple[StepView | LoopView, ...]  # NAME_invoke's statements: steps and loops
    schedule: str  # one line: layer by layer, or which layers run in row bands
    isas: tuple[str, ...]  # instruction sets beyond portable C (templates/isa/<isa>.c.j2)
    helpers: tuple[str, ...]  # shared kernel helpers (templates/kernels/<helper>.c.j2)
    cmsis_nn: CmsisPath | None = None  # the CMSIS-NN path the scratch sizes were computed for
    weights_section: str | None = None  # the linker section of the constant tables
    version: str = __version__
    target: str = ""  # which target the C is for: its name and description (NAME.h's header)
    selftest: Selftest | None = None  # with --selftest: NAME_selftest.c's vectors
    profile: ProfileView | None = None  # with --profile: per-layer cycles in NAME_invoke
    # --arena caller: no static arena; NAME_invoke_arena takes the caller's (one pointer per
    # RAM region with --ram-regions), so that the C holds no mutable static state at all.
    caller_arena: bool = False
    arena_align: int = ALIGNMENT  # every arena offset is a multiple of it (the planner's)
    # Some layer computes column regions (LayerView.columned): the helpers that address a
    # view from a column are emitted too (window_helpers.c.j2's window_taps_view).
    columned: bool = False

    @property
    def input_quantized(self) -> bool:
        return self.input_scale is not None

    @property
    def output_quantized(self) -> bool:
        return self.output_scale is not None

    @property
    def uses_float(self) -> bool:
        return any(view.input_ctype == "float" or view.output_ctype == "float"
                   for view in self.layers)

    @property
    def arrays(self) -> list[ConstArray]:
        return [a for layer in self.layers for a in const_arrays(layer.layer.params)]

    @property
    def functions(self) -> list[LayerView]:
        """The layers whose view defines a function, in order."""
        return [layer for layer in self.layers if layer.defines_function]

    def shared_pixel_functions(self, field: str) -> list:
        """The pixel functions (kernels/depthwise.py SharedBorder or SharedInside,
        kernels/pointwise.py SharedColumn, SharedPair or SharedOddRow, by their field in a
        record) the
        defined layer functions call, each once, in order of use."""
        used = (getattr(layer.params, field, None) for layer in self.functions)
        return list(dict.fromkeys(f for f in used if f is not None))

    @property
    def returns_status(self) -> bool:
        return any(step.layer.variant.returns_status for step in self.steps)

    @property
    def guarded_loops(self) -> bool:
        """Whether a loop folds a fill or drain (its guards call band_iteration)."""
        return any(isinstance(node, LoopView) and node.guarded for node in self.program)

    @property
    def shifts_by_words(self) -> bool:
        """Whether a band buffer's move is by words (NAME.c then defines band_shift_words)."""
        return any(move.by_words for step in self.steps for move in step.moves)


def layer_comment(layer: Layer, graph: Graph) -> str:
    op = layer.op
    in_shape, out_shape = graph.tensor(op.input).shape, graph.tensor(op.output).shape
    comment = f"{op.OP} {'x'.join(map(str, in_shape))} -> {'x'.join(map(str, out_shape))}"
    if isinstance(op, TableLookup):
        comment += f" ({op.source} as a lookup table)"
    return comment


# Tables that reach a layer function otherwise (a constant second operand is its input2).
PASSED_AS_OPERANDS = frozenset({"operand2"})


def table_arguments(layer: Layer) -> tuple[Params, tuple[TableArgument, ...]]:
    """The layer's parameters with each of its tables renamed to a parameter of its function,
    and the tables to pass. A library's layers keep their tables by name (their static
    structs point at them)."""
    if layer.variant.library is not None:
        return layer.params, ()
    prefix = layer.names.table("")
    renames: dict[str, str] = {}
    arguments = []
    for array in const_arrays(layer.params):
        role = array.name[len(prefix):]
        renames[array.name] = f"t_{role}"
        if role not in PASSED_AS_OPERANDS:
            arguments.append(TableArgument(f"t_{role}", array.ctype, array))
    return _renamed_tables(layer.params, renames), tuple(arguments)


def scalar_arguments(params: Params, data_scalars: tuple[str, ...]
                     ) -> tuple[Params, tuple[ScalarArgument, ...]]:
    """The parameters with each data scalar (Variant.data_scalars, paths of fields) replaced
    by a parameter of its function, d_<its path>, and the values to pass."""
    scalars = []
    for path in data_scalars:
        parameter = "d_" + path.replace(".", "_")
        scalars.append(ScalarArgument(parameter, _int32(_field(params, path), parameter)))
        params = _replaced_field(params, path.split("."), CParameter(parameter))
    return params, tuple(scalars)


def _field(record: Any, path: str) -> Any:
    for name in path.split("."):
        record = getattr(record, name)
    return record


def _replaced_field(record: Any, names: list[str], value: Any) -> Any:
    first, rest = names[0], names[1:]
    inner = value if not rest else _replaced_field(getattr(record, first), rest, value)
    return dataclasses.replace(record, **{first: inner})


def _int32(value: Any, parameter: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not -2**31 <= int(value) < 2**31:
        raise TypeError(f"{parameter}: a data scalar is an int32, not {value!r}")
    return int(value)


def _renamed_tables(record: Any, renames: dict[str, str]) -> Any:
    if isinstance(record, ConstArray):
        return dataclasses.replace(record, name=renames[record.name])
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        changes = {f.name: _renamed_tables(getattr(record, f.name), renames)
                   for f in dataclasses.fields(record)}
        return dataclasses.replace(record, **changes)
    return record


def layer_views(graph: Graph, layers: tuple[Layer, ...],
                schedule: Schedule | None = None) -> tuple[LayerView, ...]:
    """One view per layer; layers whose functions are compiled from equal parameters besides
    their data (sharing.function_key) share the first one's function, which takes their
    tables and data scalars as arguments. A layer alone with its function keeps them as
    constants."""
    drafts = []
    columned = frozenset() if schedule is None else column_layers(schedule, layers)
    for layer in layers:
        params, tables = table_arguments(layer)
        op = layer.op
        drafts.append(LayerView(layer, layer_comment(layer, graph), layer.names, params, tables,
                                f"Layer {layer.index}", True,
                                schedule is not None and schedule.is_banded(layer.index),
                                c_type(graph.tensor(op.input).dtype),
                                c_type(graph.tensor(op.output).dtype),
                                columned=layer.index in columned))
    # Banded or not, layers of one key share a function: a whole layer calls a banded one with
    # every origin 0 (its buffers hold the tensors from row 0), where it would otherwise get
    # a copy of its own (MobileNetV2 224 at 160K: layer 21's pointwise and layer 27's ADD
    # after the bands, 868 B). Column regions keep theirs.
    owner_of = sharing_groups([
        function_key(draft.layer, draft.input_ctype, draft.output_ctype,
                     (draft.banded, draft.columned) if draft.columned else None,
                     draft.comment) for draft in drafts])
    banded = {owner for owner, draft in zip(owner_of, drafts) if draft.banded}
    drafts = [dataclasses.replace(draft, banded=owner in banded)
              for owner, draft in zip(owner_of, drafts)]
    rows = _call_rows(layers, schedule)
    views = []
    for position, (layer, draft) in enumerate(zip(layers, drafts)):
        owner = owner_of[position]
        sharing = [layers[i].index for i, o in enumerate(owner_of) if o == owner]
        call_rows = () if schedule is None else \
            tuple(sorted(set().union(*(rows[i] for i in sharing))))
        if len(sharing) == 1:  # its own function: the tables stay constants, by name
            views.append(dataclasses.replace(draft, params=layer.params, tables=(),
                                             call_rows=call_rows))
            continue
        params, scalars = scalar_arguments(draft.params, layer.variant.data_scalars)
        views.append(dataclasses.replace(
            draft, names=layers[owner].names, defines_function=position == owner,
            label="Layers " + ", ".join(map(str, sharing)), params=params, scalars=scalars,
            call_rows=call_rows))
    return tuple(_tail_channels(_shared_pixel_functions(_columns_where_called(views))))


# A pointwise function's tail functions (kernels/pointwise.py SharedColumn, SharedPair) by
# the pixels a call leaves over that each computes.
TAIL_FUNCTION_FIELDS = {"shared_column": 1, "shared_pair": 2}
# A banded pointwise function whose calls all compute fewer MACs than this keeps its own
# tails (at constant sizes): the shared functions' run-time sizes cost a call's last pair of
# pixels about 800 instructions more than the inlined 2x2 product (its last pixel about
# 1,000), a tenth of a call of 3-13 K MACs (column tiles' rows of 12 to 29 pixels of VWW's
# 8- to 32-deep layers, a call a row: VWW at --max-ram 12K 6,359,486 -> 6,260,942
# instructions, code +20 B), where the rows of 28 to 112 pixels of MobileNetV2 224's bands
# (170 K MACs and more a call) keep sharing them for their code (kernels/pointwise.py
# SharedColumn; PyTorch's V2 at 160K: +920 B of code for its 28-pixel rows otherwise).
SHARED_TAIL_MIN_CALL_MACS = 32 * 1024


def _short_calls(view: LayerView) -> bool:
    """Whether every call of the view's banded pointwise function computes fewer than
    SHARED_TAIL_MIN_CALL_MACS (a layer by layer call computes the whole layer: never)."""
    params = view.params
    if not view.banded or not view.call_rows:
        return False
    macs = max(view.call_rows) * params.output.w * params.matrix.depth * params.matrix.outputs
    return macs < SHARED_TAIL_MIN_CALL_MACS


def _columns_where_called(views: list[LayerView]) -> list[LayerView]:
    """A pointwise function calls its tail functions only where its calls may leave their
    pixels over, and are not short (_short_calls): elsewhere the record drops them, so that no
    function is emitted that nothing calls, and short calls inline their own tails."""
    kept = []
    for view in views:
        params = view.params
        fields = [field for field in TAIL_FUNCTION_FIELDS
                  if getattr(params, field, None) is not None]
        short = bool(fields) and _short_calls(view)
        unused = {field: None for field in fields
                  if short or TAIL_FUNCTION_FIELDS[field] not in
                  view.pixels_left(params.block_pixels, params.output.w)}
        kept.append(dataclasses.replace(view, params=dataclasses.replace(params, **unused))
                    if unused else view)
    return kept


def _call_rows(layers: tuple[Layer, ...], schedule: Schedule | None) -> dict[int, set[int]]:
    """Per layer index, the numbers of output rows its steps compute (a whole step: all)."""
    by_index = {layer.index: layer for layer in layers}
    rows: dict[int, set[int]] = {index: set() for index in by_index}
    for step in schedule.steps if schedule is not None else ():
        whole = by_index[step.layer].output_rows
        rows[step.layer].add(whole if step.rows is None else step.rows[1] - step.rows[0])
    return rows


# Parameter fields naming a pixel function layers may share (kernels/depthwise.py
# SharedBorder, SharedInside; kernels/pointwise.py SharedColumn, SharedPair, SharedOddRow):
# emitted out of line, once, and called.
PIXEL_FUNCTION_FIELDS = ("shared_border", "shared_inside", "shared_column", "shared_pair",
                         "shared_odd_row")


def _shared_pixel_functions(views: list[LayerView]) -> list[LayerView]:
    """Each pixel function two or more layer functions would call stays in their records; a
    layer alone with its key drops it and inlines its own (a call per pixel buys nothing)."""
    callers = Counter(getattr(view.params, field, None) for view in views
                      if view.defines_function for field in PIXEL_FUNCTION_FIELDS)
    kept = []
    for view in views:
        alone = {field: None for field in PIXEL_FUNCTION_FIELDS
                 if getattr(view.params, field, None) is not None
                 and callers[getattr(view.params, field)] < 2}
        kept.append(dataclasses.replace(view, params=dataclasses.replace(view.params, **alone))
                    if alone else view)
    return kept


def _tail_channels(views: list[LayerView]) -> list[LayerView]:
    """Each shared tail function (SharedColumn, SharedPair) with the channel counts modulo 4
    of the layer functions that call it: it computes a last two channels or a last one only
    where one of them has them (MobileNets' counts are whole groups of four: 228 of
    MobileNetV2 224's 1,010 bytes of pair function are its last channel)."""
    left: dict[tuple[str, Any], set[int]] = {}
    for view in views:
        for field in TAIL_FUNCTION_FIELDS:
            shared = getattr(view.params, field, None)
            if view.defines_function and shared is not None:
                left.setdefault((field, shared), set()).add(view.params.matrix.outputs % 4)
    kept = []
    for view in views:
        tails = {field: dataclasses.replace(getattr(view.params, field), channels_left=tuple(
                     sorted(left[field, getattr(view.params, field)])))
                 for field in TAIL_FUNCTION_FIELDS
                 if (field, getattr(view.params, field, None)) in left}
        kept.append(dataclasses.replace(view, params=dataclasses.replace(view.params, **tails))
                    if tails else view)
    return kept


def check_section_name(section: str) -> None:
    """A linker section name as GNU ld and armlink take them: letters, digits, '.', '_'."""
    if not re.fullmatch(r"[.A-Za-z_][.A-Za-z0-9_]*", section):
        raise McugenError(f"--weights-section {section!r}: use letters, digits, '.' and '_', "
                          f"e.g. .extflash")


def build_model_view(graph: Graph, layers: tuple[Layer, ...], schedule: Schedule,
                     plan: Plan, name: str, source: str,
                     cmsis_nn: CmsisPath | None = None,
                     weights_section: str | None = None, target: str = "",
                     profile_arch: str | None = None,
                     caller_arena: bool = False) -> ModelView:
    """profile_arch: with --profile, the target's architecture (which counter to read)."""
    check_model_name(name)
    if weights_section is not None:
        check_section_name(weights_section)
    views = layer_views(graph, layers, schedule)
    inp, out = graph.input, graph.output
    used = [layer.variant for layer in layers]
    return ModelView(
        name=name, upper=name.upper(), source=source,
        input_size=inp.size, output_size=out.size,
        input_shape=inp.shape, output_shape=out.shape,
        input_ctype=c_type(inp.dtype), output_ctype=c_type(out.dtype),
        input_scale=float_literal(inp.scale) if inp.q else None,
        output_scale=float_literal(out.scale) if out.q else None,
        input_zero_point=inp.zero_point if inp.q else None,
        output_zero_point=out.zero_point if out.q else None,
        input_affine=affine_quantize(inp.scale, inp.zero_point, inp.dtype) if inp.q else None,
        arena_size=plan.arena_size, arenas=arena_views(plan, name), layers=views,
        steps=tuple(_step_view(step, views[step.layer], graph, plan) for step in schedule.steps),
        program=tuple(_loop_view(node, views, graph, plan) if isinstance(node, Repeat)
                      else _step_view(node, views[node.layer], graph, plan)
                      for node in schedule.program()),
        schedule=schedule_line(schedule, len(schedule.steps)),
        isas=tuple(isa.value for isa in Isa if isa is not Isa.PORTABLE
                   and any(v.isa is isa for v in used)),
        helpers=tuple(dict.fromkeys(h for v in used for h in v.helpers)),
        columned=any(view.columned for view in views),
        cmsis_nn=cmsis_nn, weights_section=weights_section, target=target,
        profile=None if profile_arch is None else profile_view(graph, layers, profile_arch),
        caller_arena=caller_arena)


def schedule_line(schedule: Schedule, steps: int) -> str:
    return schedule.describe() + (f" ({steps} steps)" if schedule.banded else "")


def _pointer(tensor: str, graph: Graph, plan: Plan) -> Pointer:
    if tensor in graph.inputs:
        return Pointer("input")
    if tensor in graph.outputs:
        return Pointer("output")
    return _arena_pointer(tensor, plan, c_type(graph.tensor(tensor).dtype))


def _arena_pointer(buffer: str, plan: Plan, ctype: str = "int8_t") -> Pointer:
    region = plan.region(buffer)
    if region is None:
        return Pointer("arena", plan.offsets[buffer], ctype=ctype)
    name, _ = plan.regions[region]
    return Pointer("arena", plan.offsets[buffer], array=f"arena_{region_identifier(name).lower()}",
                   ctype=ctype)


def _step_view(step: Step, view: LayerView, graph: Graph, plan: Plan,
               moving: tuple[Shift, ...] | None = None) -> StepView:
    """moving: the shifts whose rows the C moves (in a loop, its body's), else those that
    move rows."""
    layer = view.layer
    op = layer.op
    input2 = None
    if layer.variant.binary:
        operand2 = getattr(layer.params, "operand2", None)  # the layer's own, by name
        # A second activation: ADD's, MUL's, CONCATENATION's; a depthwise's cached halo.
        second = op.input2 if hasattr(op, "input2") else op.halo
        input2 = Pointer("table", table=operand2.name) if operand2 is not None \
            else _pointer(second, graph, plan)
    scratch = _arena_pointer(scratch_id(layer.index), plan) \
        if layer.scratch_bytes else None
    output = _pointer(op.output, graph, plan)
    if step.origins is None:
        # A whole step of a layer that shares a banded function: its operands from row 0.
        origins = (0,) * (3 if layer.variant.binary else 2) if view.banded else None
        return StepView(layer=view, input=_pointer(op.input, graph, plan), input2=input2,
                        output=output, scratch=scratch, rows=step.rows,
                        output_bytes=graph.tensor(op.output).nbytes, origins=origins)
    begin, end = step.rows
    size = row_bytes(graph, op.output)
    written = dataclasses.replace(output, offset=output.offset + (begin - step.origins[-1]) * size)
    if moving is None:
        moving = tuple(shift for shift in step.shifts if moves_rows(shift))
    moves = tuple(_move_view(shift, graph, plan) for shift in moving)
    step_view = StepView(layer=view, input=_pointer(op.input, graph, plan), input2=input2,
                         output=output, scratch=scratch, rows=step.rows,
                         output_bytes=(end - begin) * size, origins=step.origins, moves=moves,
                         written=written)
    return _column_view(step_view, step, graph) if view.columned else step_view


def _column_view(step_view: StepView, step: Step, graph: Graph) -> StepView:
    """A step of a layer given column regions: its columns and column origins, and, for the
    markers, the bytes from its first pixel written to its last (its rows' other columns
    between them included: a region's bytes are not consecutive)."""
    op = step_view.layer.layer.op
    (begin, end), (first, last) = step.rows, step.columns
    _, _, width, channels = graph.tensor(op.output).shape
    pixel = channels * np.dtype(graph.tensor(op.output).dtype).itemsize
    start = ((begin - step.origins[-1]) * width + first - step.column_origins[-1]) * pixel
    written = dataclasses.replace(step_view.output, offset=step_view.output.offset + start)
    span = ((end - 1 - begin) * width + last - first) * pixel
    return dataclasses.replace(step_view, columns=step.columns,
                               column_origins=step.column_origins, written=written,
                               output_bytes=span)


def _loop_view(repeat: Repeat, views: tuple[LayerView, ...], graph: Graph, plan: Plan
               ) -> LoopView:
    """The loop's body with each number that changes from one iteration to the next as an
    Affine, checked on every iteration (the C computes each iteration's from the first)."""
    body = []
    for j, (step, increment) in enumerate(zip(repeat.body, repeat.increments)):
        # Every iteration's numbers, guarded or not (affine all along): the moves the body's.
        moving = [k for k, shift in enumerate(step.shifts) if moves_rows(shift)]
        iterations = []
        for i in range(repeat.count):
            advanced_step = advanced(step, increment, i)
            iterations.append(_step_view(advanced_step, views[step.layer], graph, plan,
                                         tuple(advanced_step.shifts[k] for k in moving)))
        statement = _affine(iterations)
        if repeat.runs:
            count = repeat.count
            statement = dataclasses.replace(
                statement, runs=Guard(repeat.runs[j].first, repeat.runs[j].last, count),
                moves=tuple(dataclasses.replace(move, runs=Guard(runs.first, runs.last, count))
                            for move, runs in zip(statement.moves, repeat.moves[j])))
        body.append(statement)
    return LoopView(repeat.count, tuple(body), repeat.start, repeat.end - 1, bool(repeat.runs))


def _affine(values: list) -> Any:
    """One value for a field across a loop's iterations: the value when it does not change,
    an Affine when it is an integer changing by the same amount every iteration; records
    and tuples field by field. AssertionError (a bug in mcugen) for anything else."""
    first = values[0]
    if all(value is first or value == first for value in values):
        return first
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        first, per = int(first), int(values[1] - first)
        assert all(v == first + i * per for i, v in enumerate(values)), values
        return Affine(first, per)
    if dataclasses.is_dataclass(first) and all(type(v) is type(first) for v in values):
        return dataclasses.replace(first, **{
            f.name: _affine([getattr(v, f.name) for v in values])
            for f in dataclasses.fields(first)})
    if isinstance(first, tuple) and all(isinstance(v, tuple) and len(v) == len(first)
                                        for v in values):
        return tuple(_affine([v[k] for v in values]) for k in range(len(first)))
    raise AssertionError(f"a loop's statement is not affine in its iteration: {values[:3]}")


def _move_view(shift, graph: Graph, plan: Plan) -> MoveView:
    size = row_bytes(graph, shift.tensor)
    target = _pointer(shift.tensor, graph, plan)
    source = dataclasses.replace(target, offset=target.offset + (shift.keep - shift.held) * size)
    return MoveView(shift.tensor, target, source, (shift.end - shift.keep) * size)


ARENA_KINDS = ("static", "caller")  # --arena: NAME.c's own static arena, or the caller's


def check_arena_kind(arena: str) -> None:
    if arena not in ARENA_KINDS:
        raise McugenError(f"--arena {arena!r}: use static (the default: NAME_invoke on a "
                          f"static arena) or caller (NAME_invoke_arena on yours)")


# ---------------------------------------------------------------------------------------------
# Rendering


def c_rows(values: np.ndarray, per_line: int = 24) -> list[str]:
    """Array initializer rows: 'v, v, v,' with per_line numbers each (Jinja filter)."""
    flat = np.asarray(values).reshape(-1).tolist()
    return [", ".join(map(str, flat[i:i + per_line])) + ","
            for i in range(0, len(flat), per_line)]


def c_values(values: np.ndarray, per_line: int = 16) -> list[str]:
    """Array initializer rows of an input of any type: integers, or float32 literals."""
    values = np.asarray(values).reshape(-1)
    if values.dtype != np.float32:
        return c_rows(values, per_line)
    texts = [float_literal(v) for v in values.tolist()]
    return [", ".join(texts[i:i + per_line // 2]) + ","
            for i in range(0, len(texts), per_line // 2)]


def c_hex_rows(values, per_line: int = 6) -> list[str]:
    """uint32 initializer rows in hexadecimal (checksums)."""
    texts = [f"0x{int(v):08X}u" for v in values]
    return [", ".join(texts[i:i + per_line]) + "," for i in range(0, len(texts), per_line)]


@functools.lru_cache(maxsize=None)
def template_environment() -> jinja2.Environment:
    """One environment per process: Jinja compiles each template once and keeps it (a fresh
    environment per model compiled every template again: most of a small model's time)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False)
    env.filters["c_rows"] = c_rows
    env.filters["c_values"] = c_values
    env.filters["c_hex_rows"] = c_hex_rows
    return env


SOURCE_TEMPLATES = {  # output file name (NAME substituted) -> template
    "{name}.h": "model.h.j2",
    "{name}.c": "model.c.j2",
    "{name}_weights.h": "weights.h.j2",
    "{name}_weights.c": "weights.c.j2",
    "{name}_io.c": "io.c.j2",
    "CMakeLists.txt": "CMakeLists.txt.j2",
    "{name}.mk": "model.mk.j2",
}


SELFTEST_TEMPLATE = ("{name}_selftest.c", "selftest.c.j2")  # with --selftest


def render_sources(model: ModelView) -> dict[str, str]:
    env = template_environment()
    templates = dict(SOURCE_TEMPLATES)
    if model.selftest is not None:
        templates[SELFTEST_TEMPLATE[0]] = SELFTEST_TEMPLATE[1]
    return {file.format(name=model.name): env.get_template(template).render(model=model)
            for file, template in templates.items()}
