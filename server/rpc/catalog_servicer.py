"""CatalogService adapter: validates and translates requests, calls the catalog logic with the
call's deadline (server/deadline.py)."""

from __future__ import annotations

from usage.v1 import catalog_service_pb2 as pb
from usage.v1 import catalog_service_pb2_grpc as pb_grpc
from usage.v1 import pagination_pb2

from server.deadline import Deadline
from server.errors import InvalidArgument
from server.logic.catalog import Catalog
from server.rpc import convert, validation
from server.rpc.convert import optional
from server.rpc.interceptors import current_org


def _page(cursor: str) -> pagination_pb2.Pagination:
    return pagination_pb2.Pagination(cursor=cursor, has_more=bool(cursor))


class CatalogServicer(pb_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog, query_timeout_s: float) -> None:
        self._catalog = catalog
        self._timeout = query_timeout_s

    def _deadline(self, context: object) -> Deadline:
        return Deadline.of_context(context, self._timeout)

    def CreateCustomer(self, request, context):  # noqa: N802 (gRPC method name)
        validation.check(request)
        created = self._catalog.create_customer(
            current_org(), convert.customer_from_proto(request.customer), self._deadline(context)
        )
        return pb.CreateCustomerResponse(customer=convert.customer_to_proto(created))

    def GetCustomer(self, request, context):  # noqa: N802
        validation.check(request)
        return pb.GetCustomerResponse(
            customer=convert.customer_to_proto(
                self._catalog.get_customer(current_org(), request.id, self._deadline(context))
            )
        )

    def ListCustomers(self, request, context):  # noqa: N802
        validation.check(request)
        rows, cursor = self._catalog.list_customers(
            current_org(), optional(request, "limit"), request.cursor, self._deadline(context)
        )
        return pb.ListCustomersResponse(
            data=[convert.customer_to_proto(c) for c in rows], pagination=_page(cursor)
        )

    def CreateAggregator(self, request, context):  # noqa: N802
        validation.check(request)
        created = self._catalog.create_aggregator(
            current_org(), convert.aggregator_from_proto(request.aggregator), self._deadline(context)
        )
        return pb.CreateAggregatorResponse(aggregator=convert.aggregator_to_proto(created))

    def GetAggregator(self, request, context):  # noqa: N802
        validation.check(request)
        found = self._catalog.get_aggregator(current_org(), request.id, self._deadline(context))
        return pb.GetAggregatorResponse(aggregator=convert.aggregator_to_proto(found))

    def ListAggregators(self, request, context):  # noqa: N802
        validation.check(request)
        rows, cursor = self._catalog.list_aggregators(
            current_org(), optional(request, "limit"), request.cursor, self._deadline(context)
        )
        return pb.ListAggregatorsResponse(
            data=[convert.aggregator_to_proto(a) for a in rows], pagination=_page(cursor)
        )

    def UpdateAggregator(self, request, context):  # noqa: N802
        # With an update mask, only the named fields must be valid: the others are not changed. The
        # id names the aggregator to update, so it is read whatever the mask says.
        mask = list(request.update_mask.paths)
        found = [
            v
            for v in validation.violations(request)
            if not mask
            or not v.field.startswith("aggregator.")
            or v.field.split(".")[1].split("[")[0] in (*mask, "id")
        ]
        if found:
            raise InvalidArgument.of(found)
        if not request.aggregator.id:
            raise InvalidArgument.field("aggregator.id", "the id of the aggregator to update is required")
        updated = self._catalog.update_aggregator(
            current_org(), convert.aggregator_from_proto(request.aggregator), mask, self._deadline(context)
        )
        return pb.UpdateAggregatorResponse(aggregator=convert.aggregator_to_proto(updated))

    def DeleteAggregator(self, request, context):  # noqa: N802
        validation.check(request)
        self._catalog.delete_aggregator(current_org(), request.id, self._deadline(context))
        return pb.DeleteAggregatorResponse()

    def CreateAggregatorFilter(self, request, context):  # noqa: N802
        validation.check(request)
        created = self._catalog.create_aggregator_filter(
            current_org(),
            convert.aggregator_filter_from_proto(request.aggregator_filter),
            self._deadline(context),
        )
        return pb.CreateAggregatorFilterResponse(
            aggregator_filter=convert.aggregator_filter_to_proto(created)
        )

    def ListAggregatorFilters(self, request, context):  # noqa: N802
        validation.check(request)
        rows = self._catalog.list_aggregator_filters(
            current_org(), request.aggregator_id, self._deadline(context)
        )
        return pb.ListAggregatorFiltersResponse(data=[convert.aggregator_filter_to_proto(f) for f in rows])

    def DeleteAggregatorFilter(self, request, context):  # noqa: N802
        validation.check(request)
        self._catalog.delete_aggregator_filter(
            current_org(), request.aggregator_id, request.id, self._deadline(context)
        )
        return pb.DeleteAggregatorFilterResponse()
