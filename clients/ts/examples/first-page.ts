// The first page of the organization's api_call events, then a refused call and its field violations.
// From clients/ts: npm ci && npm run build && USAGE_TOKEN=$TOKEN node dist/examples/first-page.js
import { ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, usageClients } from "../src/index.js";

const address = process.env.USAGE_ADDRESS ?? "127.0.0.1:50051";
const { usage } = usageClients({ address, token: process.env.USAGE_TOKEN ?? "" });

const page = await usage.listUsageEvents({ limit: 10, metricKey: ["api_call"] });
for (const event of page.data) {
  console.log(event.id, event.customerId, event.metricKey, event.quantity);
}
console.log(`more: ${page.pagination?.hasMore ?? false}`);

try {
  await usage.listUsageEvents({ limit: -1 });
} catch (err) {
  // INVALID_ARGUMENT carries google.rpc.BadRequest: every violated field, in words.
  for (const detail of ConnectError.from(err).findDetails(BadRequestSchema)) {
    for (const violation of detail.fieldViolations) {
      console.log(`${violation.field}: ${violation.description}`);
    }
  }
}
