"""Typed field helpers carrying the rule Kubernetes applies where a value ends up in a child object.

One source: each helper is a pydantic constraint (so local runs and job configs check it) that the CRD
generator turns into the same OpenAPI pattern / bounds / list type (so the apiserver checks it at admission,
naming the field). A value that passes here cannot make the apiserver refuse the child built from it."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

T = TypeVar("T")

#: RFC 1123 subdomain: Secret, PVC, StorageClass names (validation.IsDNS1123Subdomain).
SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: RFC 1035 label: Service names, and so the run name every child name starts with.
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: ConfigMap / Secret key syntax (validation.IsConfigMapKey): its characters, and neither '.' nor a '..' prefix.
CONFIG_KEY = r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"
#: Label value syntax, non-empty (an empty value in a node affinity matches no GPU node ever).
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
_DECIMAL_SUFFIX = r"(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?"
#: A resource quantity greater than zero (a zero-size volume or a zero-memory container never works).
POSITIVE_QUANTITY = rf"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*){_DECIMAL_SUFFIX}$"

#: Free-form strings that end up in a stage config (hub ids, paths, URIs).
MAX_TEXT = 1024
#: Members of a list in the spec.
MAX_ITEMS = 64

SubdomainName = Annotated[str, Field(min_length=1, max_length=253, pattern=SUBDOMAIN)]
ConfigKey = Annotated[str, Field(min_length=1, max_length=253, pattern=CONFIG_KEY)]
LabelValue = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE)]
PositiveQuantity = Annotated[
    str,
    Field(
        max_length=32,
        pattern=POSITIVE_QUANTITY,
        description="A Kubernetes resource quantity greater than zero, e.g. 8, 500m, 64Gi.",
    ),
]
#: A non-empty list member of bounded length.
Item = Annotated[str, Field(min_length=1, max_length=253)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


def _no_duplicates(items: list[T]) -> list[T]:
    seen: list[T] = []
    for item in items:
        if item in seen:
            raise ValueError(f"duplicate value {item!r}: list items must be unique")
        seen.append(item)
    return items


class _ListTypeSet:
    """JSON Schema marker: the apiserver treats the list as a set and refuses duplicates, naming the index
    (structural schemas forbid uniqueItems)."""

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        result: dict[str, Any] = handler(schema)
        result["x-kubernetes-list-type"] = "set"
        return result


#: A list whose members must be unique (duplicated benchmarks were evaluated twice).
UniqueList = Annotated[list[T], AfterValidator(_no_duplicates), _ListTypeSet()]
