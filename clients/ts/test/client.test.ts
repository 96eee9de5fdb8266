// End to end through the generated TypeScript client: ingest events, read them back with each query
// RPC (the aggregator's value, series and ranking too), re-read a page as of its answer's asOf, and decode the rich details of an error. The Python test tests/ecosystem/test_ts_client.py
// starts the server and runs `npm test` with USAGE_ADDRESS and USAGE_TOKEN set. Each run uses ids of
// its own (customer, idempotency keys, aggregator), so it passes again against the same server, for
// any organization the token names.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, StatusSchema, usageClients } from "../src/index.js";

const address = process.env.USAGE_ADDRESS;
const token = process.env.USAGE_TOKEN;
if (!address || !token) {
  throw new Error("set USAGE_ADDRESS (host:port) and USAGE_TOKEN (a bearer token)");
}
const { usage, catalog, corrections } = usageClients({ address, token });
const at = (iso: string) => timestampFromDate(new Date(iso));
// The organization the token acts for (the service's default claim, org_id).
const org = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()).org_id;
const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
const customer = `cus_ts_${run}`;
const aggregatorId = `agg_ts_${run}`;
const key = `ts-1-${run}`;

test("ingest, then read back with every query RPC", async () => {
  let requestId: string | null = null;
  const ingested = await usage.ingestUsageEvents(
    {
      events: [
        { customerId: customer, metricKey: "api_call", timestamp: at("2026-01-10T10:00:00Z"), idempotencyKey: key, properties: { region: "eu", endpoint: "/v1/a" } },
        { customerId: customer, metricKey: "api_call", timestamp: at("2026-01-10T11:00:00Z"), quantity: "2", properties: { region: "us" } },
        { customerId: customer, metricKey: "storage_gb", timestamp: at("2026-01-11T09:30:00Z"), quantity: "1.5" },
        { customerId: customer, metricKey: "", timestamp: at("2026-01-11T09:30:00Z") },
      ],
    },
    { headers: { "x-request-id": "ts-ingest-1" }, onHeader: (h) => (requestId = h.get("x-request-id")) },
  );
  assert.equal(requestId, "ts-ingest-1", "the server echoes the request id as response metadata");
  assert.deepEqual(
    ingested.results.map((r) => r.status),
    ["ACCEPTED", "ACCEPTED", "ACCEPTED", "REJECTED"],
  );
  assert.equal(ingested.results[3].violations[0].field, "metric_key");
  const again = await usage.ingestUsageEvents({
    events: [{ customerId: customer, metricKey: "api_call", timestamp: at("2026-01-10T10:00:00Z"), idempotencyKey: key, properties: { region: "eu", endpoint: "/v1/a" } }],
  });
  assert.equal(again.results[0].status, "DUPLICATE");
  assert.equal(again.results[0].eventId, ingested.results[0].eventId);

  // ListUsageEvents: newest first, cursor pages.
  const first = await usage.listUsageEvents({ limit: 2, customerId: customer });
  assert.deepEqual(first.data.map((e) => e.metricKey), ["storage_gb", "api_call"]);
  assert.equal(first.data[0].quantity, "1.5");
  assert.equal(first.data[0].organizationId, org);
  assert.ok(first.pagination?.hasMore);
  const second = await usage.listUsageEvents({ limit: 2, customerId: customer, cursor: first.pagination!.cursor });
  assert.deepEqual(second.data.map((e) => e.id), [ingested.results[0].eventId]);
  assert.deepEqual(second.data[0].properties, { region: "eu", endpoint: "/v1/a" });
  assert.equal(second.pagination?.cursor, "");

  // ListCustomerUsageEvents through an aggregator created with the catalog client.
  await catalog.createAggregator({
    aggregator: { id: aggregatorId, name: "API calls", eventType: "api_call", operation: "count", displayNameProperty: "endpoint" },
  });
  const page = await usage.listCustomerUsageEvents({
    id: customer,
    aggregatorId,
    startDate: at("2026-01-01T00:00:00Z"),
    endDate: at("2026-02-01T00:00:00Z"),
    take: 10,
  });
  assert.deepEqual(page.meta, { $typeName: "usage.v1.PageMeta", total: 2, taken: 2, skipped: 0 });
  assert.deepEqual(page.data.map((e) => e.name), ["api_call", "/v1/a"]);
  assert.equal(timestampDate(page.data[1].timestamp!).toISOString(), "2026-01-10T10:00:00.000Z");

  // AggregateUsage: daily sums per metric key.
  const agg = await usage.aggregateUsage({
    bucket: "day",
    since: at("2026-01-10T00:00:00Z"),
    until: at("2026-01-12T00:00:00Z"),
    metric: "sum_quantity",
    groupBy: "metric_key",
    customerId: customer,
  });
  const series = Object.fromEntries(agg.series.map((s) => [s.key, s.points.map((p) => p.value)]));
  assert.deepEqual(series, { api_call: [3, 0], storage_gb: [0, 1.5] });
  // The exact sums, as canonical decimal strings, beside the doubles.
  const exact = Object.fromEntries(agg.series.map((s) => [s.key, [s.exactTotal, ...s.points.map((p) => p.exactValue)]]));
  assert.deepEqual(exact, { api_call: ["3", "3", "0"], storage_gb: ["1.5", "0", "1.5"] });

  // What the customer used of the aggregator, its daily series, and the customers ranked by it.
  const january = { startDate: at("2026-01-01T00:00:00Z"), endDate: at("2026-02-01T00:00:00Z") };
  const used = await usage.getCustomerUsage({ id: customer, aggregatorId, ...january });
  assert.deepEqual(
    used.data.map((u) => [u.aggregatorId, u.operation, u.exactTotal, u.total, u.count]),
    [[aggregatorId, "count", "2", 2, 2n]],
  );
  const daily = await usage.getAggregatorTimeSeries({
    aggregatorId,
    customerId: customer,
    bucket: "day",
    startDate: at("2026-01-09T00:00:00Z"),
    endDate: at("2026-01-12T00:00:00Z"),
  });
  assert.deepEqual(daily.points.map((p) => p.exactValue), ["0", "2", "0"]);
  assert.equal(daily.exactTotal, "2");
  const ranked = await usage.listAggregatorUsageByCustomer({ aggregatorId, ...january, take: 100 });
  assert.ok(ranked.data.some((r) => r.customerId === customer && r.exactTotal === "2"));
  assert.equal(ranked.data.length, Math.min(ranked.meta!.total, 100));
  await catalog.deleteAggregator({ id: aggregatorId });
});

test("void an event, then read its history", async () => {
  const [ingested] = (
    await usage.ingestUsageEvents({
      events: [{ customerId: customer, metricKey: "void_me", timestamp: at("2026-01-12T10:00:00Z"), quantity: "4" }],
    })
  ).results;
  const voided = await corrections.voidUsageEvents({ eventIds: [ingested.eventId], reason: "test traffic" });
  assert.deepEqual(voided.results.map((r) => r.status), ["VOIDED"]);
  // The token names its caller in `sub`; `usage-service token` sets it to the organization.
  assert.equal(voided.results[0].void?.reason, "test traffic");
  const listed = await usage.listUsageEvents({ customerId: customer, metricKey: ["void_me"] });
  assert.deepEqual(listed.data, []);
  const history = await corrections.getUsageEventHistory({ eventId: ingested.eventId });
  assert.equal(history.versions.length, 1);
  assert.equal(history.versions[0].event?.quantity, "4");
  assert.equal(history.versions[0].voided?.reason, "test traffic");
});

test("amend an event: a new version, the old one in its history", async () => {
  const [ingested] = (
    await usage.ingestUsageEvents({
      events: [{ customerId: customer, metricKey: "amend_me", timestamp: at("2026-01-12T11:00:00Z"), quantity: "4" }],
    })
  ).results;
  const amended = await corrections.amendUsageEvent({
    eventId: ingested.eventId,
    event: { quantity: "5.50" },
    updateMask: { paths: ["quantity"] },
    reason: "wrong quantity",
    expectedVersionId: ingested.eventId,
  });
  assert.equal(amended.replacedVersionId, ingested.eventId);
  assert.equal(amended.event?.quantity, "5.5");
  const history = await corrections.getUsageEventHistory({ eventId: ingested.eventId });
  assert.deepEqual(history.versions.map((v) => v.event?.quantity), ["4", "5.5"]);
  assert.equal(history.versions[0].replacedBy, amended.event?.id);
});

test("an invalid request carries google.rpc.BadRequest and ErrorInfo details", async () => {
  const request = {
    id: customer,
    aggregatorId,
    startDate: at("2026-01-01T00:00:00Z"),
    endDate: at("2026-02-01T00:00:00Z"),
    take: 500,
  };
  const err = await usage.listCustomerUsageEvents(request).then(
      () => assert.fail("take=500 must be refused"),
      (e: unknown) => ConnectError.from(e),
    );
  assert.equal(err.code, Code.InvalidArgument);
  // connect decodes the grpc-status-details-bin trailer into typed details...
  const [badRequest] = err.findDetails(BadRequestSchema);
  assert.deepEqual(badRequest.fieldViolations.map((v) => v.field), ["take"]);
  const [info] = err.findDetails(ErrorInfoSchema);
  assert.deepEqual([info.domain, info.reason], ["usage.v1", "INVALID_ARGUMENT"]);
  // ...and the raw trailer (in the error's metadata) is a google.rpc.Status, base64 of its binary form.
  const trailer = err.metadata.get("grpc-status-details-bin");
  assert.ok(trailer, "grpc-status-details-bin trailer");
  const status = fromBinary(StatusSchema, Buffer.from(trailer, "base64"));
  assert.equal(status.code, Code.InvalidArgument);
  assert.deepEqual(
    status.details.map((d) => d.typeUrl),
    ["type.googleapis.com/google.rpc.ErrorInfo", "type.googleapis.com/google.rpc.BadRequest"],
  );
});

test("an export streams every event in chunks and resumes after a chunk", async () => {
  const exportCustomer = `cus_ts_export_${run}`;
  const events = Array.from({ length: 25 }, (_, i) => ({
    customerId: exportCustomer,
    metricKey: "api_call",
    timestamp: at(`2026-01-12T10:${String(i).padStart(2, "0")}:00Z`),
    properties: { i },
  }));
  const ingested = await usage.ingestUsageEvents({ events });
  assert.ok(ingested.results.every((r) => r.status === "ACCEPTED"));
  const ids: string[] = [];
  const tokens: string[] = [];
  for await (const chunk of usage.exportUsageEvents({ customerId: exportCustomer, order: "oldest_first", chunkSize: 10 })) {
    ids.push(...chunk.data.map((e) => e.id));
    tokens.push(chunk.resumeToken);
  }
  assert.deepEqual(ids, ingested.results.map((r) => r.eventId), "oldest first: in the order ingested");
  assert.equal(tokens.length, 3);
  const rest: string[] = [];
  for await (const chunk of usage.exportUsageEvents({ customerId: exportCustomer, order: "oldest_first", chunkSize: 10, resumeToken: tokens[0] })) {
    rest.push(...chunk.data.map((e) => e.id));
  }
  assert.deepEqual(rest, ids.slice(10));
});

test("an explanation says which check an event fails", async () => {
  const explainAggregator = `agg_ts_explain_${run}`;
  await catalog.createAggregator({
    aggregator: {
      id: explainAggregator,
      name: "EU calls",
      eventType: "api_call",
      operation: "count",
      filter: { conditional: "and", fields: [{ property: "region", operator: "equals", value: { kind: { case: "stringValue", value: "eu" } } }] },
    },
  });
  const ingested = await usage.ingestUsageEvents({
    events: [{ customerId: `cus_ts_explain_${run}`, metricKey: "api_call", timestamp: at("2026-01-13T10:00:00Z"), properties: { region: "us" } }],
  });
  const eventId = ingested.results[0].eventId;
  const got = await usage.explainUsageEvent({ eventId, aggregatorId: explainAggregator });
  assert.equal(got.counts, false);
  assert.equal(got.event?.id, eventId);
  assert.deepEqual(got.checks.map((c) => [c.name, c.passed]), [["current", true], ["customer", true], ["event_type", true], ["aggregator_filter", false]]);
  const [region] = got.checks[3].conditions;
  assert.deepEqual(
    [region.property, region.expected?.kind.value, region.actual?.kind.value, region.present, region.passed],
    ["region", "eu", "us", true, false],
  );
  await catalog.deleteAggregator({ id: explainAggregator });
});

test("an answer's asOf, passed back, gives the same page after later changes", async () => {
  const asOfCustomer = `cus_ts_as_of_${run}`;
  const ingest = async (...hours: number[]) =>
    (
      await usage.ingestUsageEvents({
        events: hours.map((h) => ({ customerId: asOfCustomer, metricKey: "api_call", timestamp: at(`2026-01-14T${String(h).padStart(2, "0")}:00:00Z`) })),
      })
    ).results.map((r) => r.eventId);
  const ids = await ingest(10, 11);
  const first = await usage.listUsageEvents({ customerId: asOfCustomer, limit: 10 });
  assert.deepEqual(first.data.map((e) => e.id), [ids[1], ids[0]]);
  assert.ok(first.asOf, "every answer says what moment it is as of");
  assert.ok(timestampDate(first.asOf!) <= new Date());
  // Later: a newer event, and one of the page's events voided.
  const [newer] = await ingest(12);
  await corrections.voidUsageEvents({ eventIds: [ids[0]], reason: "test traffic" });
  const now = await usage.listUsageEvents({ customerId: asOfCustomer, limit: 10 });
  assert.deepEqual(now.data.map((e) => e.id), [newer, ids[1]]);
  const again = await usage.listUsageEvents({ customerId: asOfCustomer, limit: 10, asOf: first.asOf });
  assert.deepEqual(again.data.map((e) => e.id), first.data.map((e) => e.id));
  assert.deepEqual(again.asOf, first.asOf);
  // A moment not yet past is refused, naming the field.
  const err = await usage.listUsageEvents({ customerId: asOfCustomer, asOf: timestampFromDate(new Date(Date.now() + 600_000)) }).then(
    () => assert.fail("a future as_of must be refused"),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(err.code, Code.InvalidArgument);
  assert.deepEqual(err.findDetails(BadRequestSchema)[0].fieldViolations.map((v) => v.field), ["as_of"]);
});

test("a call without a valid token is UNAUTHENTICATED", async () => {
  const anonymous = usageClients({ address, token: "not-a-jwt" });
  await assert.rejects(anonymous.usage.listUsageEvents({}), (e: unknown) => ConnectError.from(e).code === Code.Unauthenticated);
});
