"""Old-style ONNX graphs made plain before they are converted to PyTorch (issue 19).

The public model zoo's classic networks and older exporters (Caffe2's, opset 7 to 9, IR version 3) write graphs that
onnxruntime runs but that onnx2torch and the fine-tuning checks do not take as they are:

- the weights are listed among the graph's inputs as well as being initializers (IR version 3 had to);
- weights and shapes come out of Constant nodes, or out of small constant subgraphs (a ConstantOfShape and an Add
  making a Reshape's target shape), where onnx2torch reads a Conv's or Gemm's weights only from initializers;
- the batch is fixed to one image (input [1, 3, 224, 224], a Reshape to the constant [1, 9216] before the dense
  layers), so the converted network could take no other batch;
- the output is [N, 1000, 1, 1] (SqueezeNet and DenseNet-121 end in global pooling or a 1×1 convolution), not one
  row of class scores per image.

`normalise_graph` applies the steps below in this order. Each is a small function of the graph alone that returns
the changed graph and what it did (or None where there is nothing to do); a change is kept only when the graph it
makes gives onnxruntime's outputs on the ORIGINAL graph on seeded random images (to TOLERANCE of the outputs' scale;
the batch-freeing step also on a batch of another size, image by image), so a normalisation never changes what the
model computes. A step whose check fails is left out and the reason recorded.

1. `weights_out_of_inputs`: inputs that have an initializer are weights, not inputs.
2. `fold_constants`: Constant nodes become initializers, and nodes computing only from constants are computed once
   and become initializers too.
3. `free_batch`: a batch fixed in the input (and in constant Reshape targets) made free.
4. `squeeze_spatial_output`: trailing singleton sides of the output squeezed ([N, C, 1, 1] -> [N, C], a Flatten).

Why our own folding rather than a tool's. onnxruntime's offline optimisation (even at its basic level) and
onnx-simplifier also fuse BatchNormalization into the convolution before it, Add/Mul into convolutions and drop
Dropout: a fine-tune would lose the BatchNorm layers it trains, and the zoo-copy path would no longer see the layers
it matches. Both (and onnxscript's optimizer) also turn Shape of a statically shaped value into a constant, which
fixes the batch. onnx itself has no constant folding (onnx.optimizer left it). So `fold_constants` folds exactly the
nodes whose inputs are all constants, and has onnxruntime (already the reference every check uses; no new
dependency) compute them in the file's own opset, so every old operator computes as the runtime computes it.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

TOLERANCE = 1e-4       # of max(1, the outputs' largest magnitude): conversion.VERIFY_TOLERANCE's rule
CHECK_SEED = 4321
FREE_BATCH = "N"
RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
DEFAULT_DOMAINS = ("", "ai.onnx")
MIN_IR_WITHOUT_INPUTS = 4  # from IR version 4 on, an initializer need not be listed among the inputs


@dataclass
class Normalised:
    """The graph after the steps that passed their check; what each did, and why the others were left out."""
    model: onnx.ModelProto
    applied: dict[str, str] = field(default_factory=dict)    # step -> what it did
    not_used: dict[str, str] = field(default_factory=dict)   # step -> why its graph was not taken

    @property
    def squeezed(self) -> bool:
        return "squeeze_spatial_output" in self.applied

    def details(self) -> dict:
        return {"applied": dict(self.applied), "not_used": dict(self.not_used)}

    def summary(self) -> str:
        """One sentence for an import's reason ('' when nothing changed)."""
        if not self.applied:
            return ""
        return (f"Its graph was normalised first ({'; '.join(self.applied.values())}), each step checked against "
                "onnxruntime on the original graph.")


Step = Callable[[onnx.ModelProto], "tuple[onnx.ModelProto, str] | None"]


# ----------------------------------------------------------------------------------------------- the steps


def weights_out_of_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str] | None:
    """Graph inputs that have an initializer are weights (IR version 3 had to list every initializer as an input,
    which made them overridable inputs in the eyes of later tools): they stop being inputs."""
    weights = {t.name for t in model.graph.initializer}
    listed = [value for value in model.graph.input if value.name in weights]
    if not listed:
        return None
    changed = copy_of(model)
    kept = [value for value in changed.graph.input if value.name not in weights]
    del changed.graph.input[:]
    changed.graph.input.extend(kept)
    at_least_ir4(changed)
    return changed, f"{len(listed)} weight(s) listed among the inputs made weights"


def fold_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str] | None:
    """Constant nodes become initializers; nodes whose inputs are all constants (initializers that are not inputs,
    Constant outputs, outputs of nodes folded before them) are computed by onnxruntime, in the file's opset, and
    their outputs become initializers. Random, control-flow and other domains' nodes are left alone."""
    graph = model.graph
    inputs = {value.name for value in graph.input}
    outputs = {value.name for value in graph.output}
    known = {t.name for t in graph.initializer if t.name not in inputs}
    folded: list = []
    for node in graph.node:
        if foldable(node, known) and not any(name in outputs for name in node.output):
            folded.append(node)
            known.update(name for name in node.output if name)
    if not folded:
        return None
    folded_ids = {id(node) for node in folded}
    kept_nodes = [node for node in graph.node if id(node) not in folded_ids]
    used = {name for node in kept_nodes for name in node.input} | outputs | subgraph_inputs(graph)
    produced = [name for node in folded for name in node.output if name and name in used]
    values = direct_constants(folded)
    computed = [name for name in produced if name not in values]
    if computed:
        values.update(evaluated(model, [node for node in folded if node.output[0] not in values], computed, values))
    changed = copy_of(model, nodes=False)
    changed.graph.node.extend(copy.deepcopy(kept_nodes))
    for name in produced:
        value = values[name]
        tensor = value if isinstance(value, onnx.TensorProto) else numpy_helper.from_array(np.asarray(value), name)
        tensor.name = name
        changed.graph.initializer.append(tensor)
    drop_unused_initializers(changed)
    at_least_ir4(changed)
    constants = sum(1 for node in folded if node.op_type == "Constant")
    others = len(folded) - constants
    parts = [f"{constants} Constant node(s)"] if constants else []
    if others:
        ops = ", ".join(sorted({node.op_type for node in folded if node.op_type != "Constant"}))
        parts.append(f"{others} node(s) computing only from constants ({ops})")
    return changed, " and ".join(parts) + " folded into initializers"


def free_batch(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str] | None:
    """A batch fixed in the image input (Caffe2's files take exactly one image) made free: the input's first side
    becomes symbolic, and a Reshape to a constant target whose first entry is that batch gets -1 there (its other
    entries made explicit from the original's static shapes where the target had a -1 of its own)."""
    graph = model.graph
    image = image_input(graph)
    if image is None:
        return None
    dims = image.type.tensor_type.shape.dim
    if not dims or not dims[0].HasField("dim_value") or dims[0].dim_value <= 0:
        return None
    batch = dims[0].dim_value
    static = static_shapes(model)
    changed = copy_of(model)
    constants = {t.name: t for t in changed.graph.initializer}
    reshapes = 0
    for node in changed.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        target = numpy_helper.to_array(constants[node.input[1]]).astype(np.int64).reshape(-1)
        if target.size < 2 or target[0] != batch:
            continue
        rest = [int(v) for v in target[1:]]
        if -1 in rest:
            known = static.get(node.output[0])
            if not known or len(known) != target.size or any(not d for d in known[1:]):
                continue
            rest = [int(d) for d in known[1:]]
        name = unique_name(changed.graph, f"{node.input[1]}_free_batch")
        changed.graph.initializer.append(numpy_helper.from_array(np.array([-1, *rest], np.int64), name))
        node.input[1] = name
        reshapes += 1
    for value in [image_input(changed.graph), *changed.graph.output]:
        value_dims = value.type.tensor_type.shape.dim
        if value_dims and value_dims[0].HasField("dim_value") and value_dims[0].dim_value == batch:
            value_dims[0].dim_param = FREE_BATCH
    del changed.graph.value_info[:]   # shapes inferred for the fixed batch
    drop_unused_initializers(changed)
    made = f"the batch fixed at {batch} made free"
    return changed, made + (f" ({reshapes} Reshape target(s) with it)" if reshapes else "")


def squeeze_spatial_output(model: onnx.ModelProto, shape: list | None = None) -> tuple[onnx.ModelProto, str] | None:
    """An output [N, C, 1, 1, ...] (global pooling or a 1×1 convolution at the end) flattened to [N, C]: a Flatten,
    the output keeping its name. It goes before a trailing chain of operations that work on rows as they work on
    [N, C, 1, 1] (SqueezeNet's Softmax over axis 1, a ReLU, Dropout), so that they get rows: a Softmax over a 4-D
    input would come out of the opset converter as Shape, Flatten, Softmax and a Reshape to the runtime shape,
    which a fine-tuned network could not be exported with. `shape`: the output's shape when the graph does not say
    it (as onnxruntime gave it)."""
    graph = model.graph
    if not graph.output:
        return None
    sides = list(shape) if shape is not None else (static_shapes(model).get(graph.output[0].name) or declared_shape(graph.output[0]))
    if not sides or len(sides) <= 2 or any(d != 1 for d in sides[2:]):
        return None
    changed = copy_of(model)
    name = changed.graph.output[0].name
    value, first_row_op = name, None
    producers = {o: node for node in changed.graph.node for o in node.output}
    users: dict[str, int] = {}
    for node in changed.graph.node:
        for i in node.input:
            users[i] = users.get(i, 0) + 1
    ends = {v.name for v in changed.graph.output} | {v.name for v in changed.graph.input}
    while (node := producers.get(value)) is not None and works_on_rows(node, opset_of(changed)):
        source = node.input[0]
        if users.get(source, 0) != 1 or source in ends:
            break
        value, first_row_op = source, node
    flatten = helper.make_node("Flatten", [value], [unique_name(changed.graph, f"{name}_rows")], axis=1,
                               name=unique_name(changed.graph, f"{name}_squeeze"))
    nodes = list(changed.graph.node)
    if first_row_op is None:   # the Flatten last, making the output itself
        inner = unique_name(changed.graph, f"{name}_spatial")
        for node in nodes:
            node.output[:] = [inner if o == name else o for o in node.output]
        flatten.input[0], flatten.output[0] = inner, name
        nodes.append(flatten)
    else:                      # the Flatten before the chain, which then works on rows
        first_row_op.input[0] = flatten.output[0]
        nodes.insert(nodes.index(first_row_op), flatten)
    del changed.graph.node[:]
    changed.graph.node.extend(nodes)
    del changed.graph.value_info[:]   # the chain's shapes are rows now
    output = changed.graph.output[0]
    dims = output.type.tensor_type.shape.dim
    first = copy.deepcopy(dims[0]) if len(dims) else None
    second = copy.deepcopy(dims[1]) if len(dims) > 1 else None
    del dims[:]
    for dim in (first, second):
        new = dims.add()
        if dim is not None:
            new.CopyFrom(dim)
    before = "×".join(str(d) if d else "?" for d in sides)
    return changed, f"the output {before} flattened to its first two sides"


ROW_OPS = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Identity", "Dropout", "Softmax", "LogSoftmax"}
OVER_AXIS = {"Softmax", "LogSoftmax"}


def works_on_rows(node, opset: int) -> bool:
    """Whether the node computes on [N, C] rows what it computes on [N, C, 1, 1] (one data input, one output used;
    a softmax over axis 1, which before opset 13 is the default)."""
    if node.op_type not in ROW_OPS or node.domain not in DEFAULT_DOMAINS or len([o for o in node.output if o]) != 1:
        return False
    if node.op_type in OVER_AXIS:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1 if opset < 13 else -1)
        return axis == 1
    return True


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)


STEPS: tuple[tuple[str, Step], ...] = (
    ("weights_out_of_inputs", weights_out_of_inputs),
    ("fold_constants", fold_constants),
    ("free_batch", free_batch),
    ("squeeze_spatial_output", squeeze_spatial_output),
)


# ----------------------------------------------------------------------------------------------- applying and checking


def normalise_graph(model: onnx.ModelProto, size: tuple[int, int] = (64, 64), session=None) -> Normalised:
    """The graph after each step that gives the original's outputs; `size`: the images' sides where the input's are
    free; `session`: an onnxruntime session of the original already made (one is made otherwise). The original is
    never changed. When onnxruntime cannot run the original on such images, nothing is changed (and the reason
    recorded for every step)."""
    result = Normalised(model)
    try:
        check = Check(model, size, session)
    except Exception as error:
        result.not_used = {name: f"the original could not be run to check it ({short(error)})" for name, _ in STEPS}
        return result
    current = model
    for name, step in STEPS:
        try:
            made = step(current, check.output_shape) if step is squeeze_spatial_output else step(current)
        except Exception as error:
            result.not_used[name] = f"it failed ({short(error)})"
            continue
        if made is None:
            continue
        candidate, what = made
        problem = check.problem(candidate)
        if problem:
            result.not_used[name] = problem
            continue
        current = candidate
        result.applied[name] = what
    result.model = current
    return result


class Check:
    """onnxruntime's outputs on the original graph, which every normalised graph must give."""

    def __init__(self, model: onnx.ModelProto, size: tuple[int, int], session=None):
        self.session = session or session_of(model)
        shape = self.session.get_inputs()[0].shape
        self.input_name = self.session.get_inputs()[0].name
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 0
        channels = shape[1] if len(shape) > 1 and isinstance(shape[1], int) else 1
        sides = [s if isinstance(s, int) and s > 0 else size[i] for i, s in enumerate(shape[2:4])]
        rng = np.random.default_rng(CHECK_SEED)
        self.images = rng.random((self.batch or 2, channels, *sides), dtype=np.float32)
        self.expected = self.run_original(self.images)
        self.output_shape = list(self.expected[0].shape)
        # another batch than the original's: each image alone through the original, for a graph whose batch is free
        self.other_images = rng.random((2 * self.batch if self.batch else 3, channels, *sides), dtype=np.float32)
        self._other_expected = None

    def run_original(self, images: np.ndarray) -> list[np.ndarray]:
        step = self.batch or len(images)
        parts = [self.session.run(None, {self.input_name: images[i:i + step]}) for i in range(0, len(images), step)]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]

    @property
    def other_expected(self) -> list[np.ndarray]:
        if self._other_expected is None:
            self._other_expected = self.run_original(self.other_images)
        return self._other_expected

    def problem(self, candidate: onnx.ModelProto) -> str:
        """'' when the candidate gives the original's outputs; else why not, in words."""
        try:
            session = session_of(candidate)
            got = session.run(None, {session.get_inputs()[0].name: self.images})
        except Exception as error:
            return f"onnxruntime could not run the changed graph ({short(error)})"
        problem = differs(got, self.expected)
        if problem:
            return problem
        shape = session.get_inputs()[0].shape
        if self.batch and not (isinstance(shape[0], int) and shape[0] > 0):
            try:
                got = session.run(None, {session.get_inputs()[0].name: self.other_images})
            except Exception as error:
                return f"the changed graph does not take a batch of {len(self.other_images)} ({short(error)})"
            problem = differs(got, self.other_expected)
            if problem:
                return f"on a batch of {len(self.other_images)}, image by image through the original: {problem}"
        return ""


def differs(got: list, expected: list) -> str:
    if len(got) != len(expected):
        return f"it has {len(got)} output(s) where the original has {len(expected)}"
    for index, (mine, theirs) in enumerate(zip(got, expected)):
        mine, theirs = np.asarray(mine), np.asarray(theirs)
        squeezed = theirs.reshape(theirs.shape[:2]) if theirs.ndim > 2 and all(d == 1 for d in theirs.shape[2:]) else theirs
        if mine.shape not in (theirs.shape, squeezed.shape) or mine.dtype != theirs.dtype:
            return f"output {index} is {list(mine.shape)} {mine.dtype} where the original's is {list(theirs.shape)} {theirs.dtype}"
        if mine.dtype.kind not in "fc":
            if not np.array_equal(mine.reshape(-1), theirs.reshape(-1)):
                return f"output {index} differs from the original's"
            continue
        reference = theirs.reshape(-1).astype(np.float64)
        difference = float(np.abs(mine.reshape(-1).astype(np.float64) - reference).max()) if reference.size else 0.0
        tolerance = TOLERANCE * max(1.0, float(np.abs(reference).max()) if reference.size else 1.0)
        if not difference <= tolerance:
            return f"output {index} differs from the original's by {difference:.1e} (allowed {tolerance:.0e})"
    return ""


# ----------------------------------------------------------------------------------------------- helpers


def session_of(model: onnx.ModelProto):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3   # the opset and transpose-optimiser warnings old files give are expected here
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def copy_of(model: onnx.ModelProto, nodes: bool = True) -> onnx.ModelProto:
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    if not nodes:
        del changed.graph.node[:]
    return changed


def at_least_ir4(model: onnx.ModelProto) -> None:
    """Initializers that are not inputs need IR version 4 (a version that changed nothing else)."""
    if model.ir_version < MIN_IR_WITHOUT_INPUTS:
        model.ir_version = MIN_IR_WITHOUT_INPUTS


def foldable(node, known: set[str]) -> bool:
    if node.domain not in DEFAULT_DOMAINS or node.op_type in RANDOM_OPS:
        return False
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return False
    if node.op_type == "Constant":
        return True
    inputs = [name for name in node.input if name]
    return bool(inputs) and all(name in known for name in inputs)


def direct_constants(nodes) -> dict[str, onnx.TensorProto]:
    """Constant nodes holding a tensor (`value`): the tensor itself, no computing needed."""
    found = {}
    for node in nodes:
        if node.op_type == "Constant" and len(node.output) == 1:
            value = next((a.t for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
            if value is not None:
                found[node.output[0]] = copy.deepcopy(value)
    return found


def evaluated(model: onnx.ModelProto, nodes, names: list[str], direct: dict) -> dict[str, np.ndarray]:
    """The values `names` that `nodes` make from the model's initializers and the `direct` constants, computed by
    onnxruntime in the model's opsets."""
    produced = {o for node in nodes for o in node.output}
    needed = {i for node in nodes for i in node.input if i and i not in produced}
    initializers = [t for t in model.graph.initializer if t.name in needed]
    initializers += [renamed(direct[name], name) for name in sorted(needed & set(direct))]
    graph = helper.make_graph(list(nodes), "constants", [], [onnx.ValueInfoProto(name=name) for name in names], initializers)
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=max(model.ir_version, MIN_IR_WITHOUT_INPUTS))
    values = session_of(sub).run(names, {})
    return dict(zip(names, values))


def renamed(tensor: onnx.TensorProto, name: str) -> onnx.TensorProto:
    tensor = copy.deepcopy(tensor)
    tensor.name = name
    return tensor


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output} | \
        {value.name for value in graph.input} | subgraph_inputs(graph)
    kept = [t for t in graph.initializer if t.name in used]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)


def subgraph_inputs(graph) -> set[str]:
    """Names that nodes inside If/Loop/Scan bodies read from the graph around them."""
    names = set()
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
                names |= {name for inner in sub.node for name in inner.input} | subgraph_inputs(sub)
    return names


def image_input(graph):
    weights = {t.name for t in graph.initializer}
    return next((value for value in graph.input if value.name not in weights), None)


def declared_shape(value) -> list[int]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else 0 for d in dims]


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Shapes by ONNX shape inference, sides not known as 0 ({} when inference fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    return {value.name: declared_shape(value) for value in [*inferred.graph.value_info, *inferred.graph.output]
            if value.type.tensor_type.HasField("shape")}


def unique_name(graph, wanted: str) -> str:
    taken = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {v.name for v in graph.output} | \
        {name for node in graph.node for name in (*node.input, *node.output)} | {node.name for node in graph.node}
    name, n = wanted, 1
    while name in taken:
        n += 1
        name = f"{wanted}_{n}"
    return name


def short(error: Exception, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return (text[:limit] + "…") if len(text) > limit else (text or type(error).__name__)
