"""CorrectionService adapter: validates and translates requests, calls the corrections logic with
the call's deadline (server/deadline.py)."""

from __future__ import annotations

from usage.v1 import corrections_service_pb2 as pb
from usage.v1 import corrections_service_pb2_grpc as pb_grpc

from server import wire
from server.deadline import Deadline
from server.domain import Correction
from server.errors import InvalidArgument
from server.logic.corrections import Corrections
from server.rpc import convert, validation
from server.rpc.convert import optional
from server.rpc.interceptors import current_caller, current_org


def _correction(c: Correction) -> pb.Correction:
    return pb.Correction(corrected_at=convert.us_to_ts(c.at_us), corrected_by=c.actor, reason=c.reason)


class CorrectionServicer(pb_grpc.CorrectionServiceServicer):
    def __init__(self, corrections: Corrections, query_timeout_s: float) -> None:
        self._corrections = corrections
        self._timeout = query_timeout_s

    def VoidUsageEvents(self, request, context):  # noqa: N802 (gRPC method name)
        validation.check(request)
        outcomes = self._corrections.void(
            current_org(),
            current_caller(),
            list(request.event_ids),
            request.reason,
            Deadline.of_context(context, self._timeout),
        )
        response = pb.VoidUsageEventsResponse()
        for o in outcomes:
            result = response.results.add(event_id=o.event_id, status=o.status)
            if o.void is not None:
                result.void.CopyFrom(_correction(o.void))
        return response

    def AmendUsageEvent(self, request, context):  # noqa: N802
        # Only the fields the mask names must be valid: the others are not read.
        mask = list(request.update_mask.paths)
        found = [
            v
            for v in validation.violations(request, json_checked=True)
            if not v.field.startswith("event.") or v.field[6:].split(".")[0].split("[")[0] in mask
        ]
        if found:
            raise InvalidArgument.of(found)
        result = self._corrections.amend(
            current_org(),
            current_caller(),
            request.event_id,
            convert.event_draft(request.event),
            mask,
            request.reason,
            optional(request, "expected_version_id"),
            Deadline.of_context(context, self._timeout),
        )
        assert result.version is not None and result.amend is not None
        (event,) = wire.decode([result.version.wire])
        return pb.AmendUsageEventResponse(
            event=event, replaced_version_id=result.replaced_id, amend=_correction(result.amend)
        )

    def GetUsageEventHistory(self, request, context):  # noqa: N802
        validation.check(request)
        versions = self._corrections.history(
            current_org(), request.event_id, Deadline.of_context(context, self._timeout)
        )
        response = pb.GetUsageEventHistoryResponse()
        for version, event in zip(versions, wire.decode(v.wire for v in versions), strict=True):
            out = response.versions.add(event=event)
            if version.void is not None:
                out.voided.CopyFrom(_correction(version.void))
            if version.replaced_by is not None:
                out.replaced_by = version.replaced_by
        return response
