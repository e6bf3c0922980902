"""Loading a user's ``"pkg.mod:factory"`` specs into subjects to check (docs/REGRESSION.md, "Design").
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from dualnet_ssl.errors import BadInput
from dualnet_ssl.regression.declarations import DECLARATION_FIELDS, LossAdapter, NetAdapter
from dualnet_ssl.regression.engine import first_call, in_declared_dtype

def load_object(spec: str) -> Any:
    """``"pkg.mod:attr.sub"`` -> the object; ``BadInput`` that says what to fix when it cannot be found."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BadInput(f"'{spec}' is not of the form 'package.module:factory'")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise BadInput(f"cannot import '{module_name}' (from '{spec}'): {err}; install your package "
                           "(pip install -e .) or run pytest where it is importable") from None
        raise BadInput(f"'{module_name}' (from '{spec}') was found, but importing it failed because it needs "
                       f"'{missing}', which is not installed: {err}; install your package's dependencies") from None
    except Exception as err:   # the user's module raised while being imported
        raise BadInput(f"importing '{module_name}' (from '{spec}') raised {type(err).__name__}: {err}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BadInput(f"'{module_name}' has no attribute '{attr}' (from '{spec}')")
        obj = getattr(obj, part)
    return obj

def parse_json_object(text: str | None, what: str) -> dict | None:
    """A JSON object from the command line (None stays None)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInput(f"{what} is not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise BadInput(f"{what} must be a JSON object such as '{{\"temperature\": 0.2}}', got {text!r}")
    return value

def call_factory(factory: Callable, kwargs: dict, spec: str):
    """The factory's product; ``BadInput`` naming the cause when it raises (a missing dependency named as such)."""
    try:
        return factory(**kwargs)
    except BadInput:
        raise
    except ImportError as err:
        raise BadInput(f"calling '{spec}' with {kwargs} failed: it needs '{getattr(err, 'name', None) or err}', "
                       f"which cannot be imported ({err}); install your package's dependencies") from None
    except Exception as err:   # the user's factory raised: one usage error that names it, never a crash
        raise BadInput(f"calling '{spec}' with {kwargs} failed: {type(err).__name__}: {err}") from None

@dataclass(frozen=True)
class LossSubject:
    """A loss to check: a factory, its keyword arguments and (for a bare callable) a declaration."""

    name: str
    factory: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)
    declares: dict | None = None
    batch_size: int | None = None
    strict_float32: bool = False   # --ssl-strict-float32: a float32 finding below the declared tau fails

    def build(self, **overrides) -> LossAdapter:
        kwargs = {**self.kwargs, **overrides}
        made = call_factory(self.factory, kwargs, self.name)
        if isinstance(made, LossAdapter):
            adapter = dataclasses.replace(made, **(self.declares or {}))
        elif callable(made):
            if self.declares is None:
                raise BadInput(
                    f"'{self.name}' returned a bare {type(made).__name__}: declare which pairs it treats as positives "
                    "and negatives, either with --ssl-loss-declares '{\"form\": \"two_view\", \"symmetric\": true, "
                    "...}' or by returning dualnet_ssl.regression.two_view(loss, ...) (docs/REGRESSION.md)")
            unknown = sorted(set(self.declares) - set(DECLARATION_FIELDS))
            if unknown:
                raise BadInput(f"--ssl-loss-declares: unknown fields {unknown}; known: {list(DECLARATION_FIELDS)}")
            declares = dict(self.declares)
            key = declares.get("temperature_kwarg")
            if key is not None and "temperature" not in declares and key in kwargs:
                declares["temperature"] = kwargs[key]
            adapter = LossAdapter(made, **declares)
        else:
            raise BadInput(f"'{self.name}' returned {type(made).__name__}, expected a loss callable or a LossAdapter")
        if self.batch_size is not None:
            adapter = dataclasses.replace(adapter, batch_size=self.batch_size)
        if self.strict_float32:
            adapter = dataclasses.replace(adapter, strict_float32=True)
        adapter = in_declared_dtype(adapter)   # a declared dtype: the loss is fed that dtype only
        return adapter if adapter.name else dataclasses.replace(adapter, name=self.name)


def load_loss(spec: str, kwargs: str | None = None, declares: str | None = None,
              batch_size: int | None = None, strict_float32: bool = False) -> LossSubject:
    """``--ssl-loss SPEC --ssl-loss-kwargs JSON --ssl-loss-declares JSON --ssl-batch N`` -> a checked
    ``LossSubject``: built and called once on the probe batch at every probe size, so that an unusable loss is
    one usage error with its cause rather than a failure in every check."""
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 2):
        raise BadInput(f"--ssl-batch must be an integer >= 2, got {batch_size!r}")
    subject = LossSubject(spec, load_object(spec), parse_json_object(kwargs, "--ssl-loss-kwargs") or {},
                          parse_json_object(declares, "--ssl-loss-declares"), batch_size, bool(strict_float32))
    first_call(subject.build())
    return subject

def builtin_loss(factory: Callable[..., LossAdapter], **kwargs) -> LossSubject:
    name = factory(**kwargs).name
    return LossSubject(name, factory, kwargs)

@dataclass(frozen=True)
class NetSubject:
    """A network to check: a factory, its keyword arguments and, for a bare module, the input shape."""

    name: str
    factory: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None

    def build(self, dtype: torch.dtype = torch.float64) -> NetAdapter:
        """A fresh copy of the network in ``dtype`` (float64 for exact identities; the user's object is untouched)."""
        made = call_factory(self.factory, self.kwargs, self.name)
        if isinstance(made, NetAdapter):
            net, shape = made.net, tuple(made.input_shape)
        elif isinstance(made, nn.Module):
            net, shape = made, self.input_shape or _infer_input_shape(made, self.name)
        else:
            raise BadInput(f"'{self.name}' returned {type(made).__name__}, expected an nn.Module or a NetAdapter")
        net = copy.deepcopy(net)
        try:
            net = net.to(dtype)
        except (RuntimeError, TypeError):
            pass   # a network that cannot change dtype is checked in its own, with that dtype's tolerances
        return NetAdapter(net, shape, self.name)

def _infer_input_shape(net: nn.Module, name: str) -> tuple[int, ...]:
    first = next((m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise BadInput(f"cannot tell the input shape of '{name}' (its first layer is not nn.Linear): pass "
                   "--ssl-model-input '[3, 32, 32]' or return dualnet_ssl.regression.NetAdapter(net, input_shape)")

def load_net(spec: str, kwargs: str | None = None, input_shape: str | None = None) -> NetSubject:
    """``--ssl-model SPEC --ssl-model-kwargs JSON --ssl-model-input JSON`` -> a checked ``NetSubject``."""
    shape = None
    if input_shape is not None:
        try:
            shape = tuple(int(n) for n in json.loads(input_shape))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise BadInput(f"--ssl-model-input must be a JSON list of sizes such as '[3, 32, 32]', got "
                           f"{input_shape!r}") from None
    subject = NetSubject(spec, load_object(spec), parse_json_object(kwargs, "--ssl-model-kwargs") or {}, shape)
    subject.build()
    return subject
