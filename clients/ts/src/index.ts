// The usage.v1 client: generated messages and service descriptors (src/gen, by `buf generate`) plus a
// helper that builds gRPC clients with connect-node.
//
//   const { usage, catalog, corrections } = usageClients({ address: "127.0.0.1:50051", token });
//   const page = await usage.listUsageEvents({ limit: 10 });
//   await corrections.voidUsageEvents({ eventIds: [page.data[0].id], reason: "test traffic" });
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CatalogService } from "./gen/usage/v1/catalog_service_pb.js";
import { CorrectionService } from "./gen/usage/v1/corrections_service_pb.js";
import { UsageService } from "./gen/usage/v1/usage_service_pb.js";

export * from "./gen/usage/v1/catalog_pb.js";
export * from "./gen/usage/v1/catalog_service_pb.js";
export * from "./gen/usage/v1/corrections_service_pb.js";
export * from "./gen/usage/v1/events_pb.js";
export * from "./gen/usage/v1/pagination_pb.js";
export * from "./gen/usage/v1/usage_service_pb.js";
export { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
export { StatusSchema } from "./gen/google/rpc/status_pb.js";

export interface UsageClientOptions {
  /** host:port of the gRPC server (plaintext). */
  address: string;
  /** A JWT for the organization to act for; sent as `authorization: Bearer <token>`. */
  token: string;
}

export interface UsageClients {
  usage: Client<typeof UsageService>;
  catalog: Client<typeof CatalogService>;
  corrections: Client<typeof CorrectionService>;
}

/** gRPC clients of the three services over one HTTP/2 transport that sends the bearer token. */
export function usageClients(options: UsageClientOptions): UsageClients {
  const bearer: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${options.token}`);
    return next(req);
  };
  const transport = createGrpcTransport({ baseUrl: `http://${options.address}`, interceptors: [bearer] });
  return {
    usage: createClient(UsageService, transport),
    catalog: createClient(CatalogService, transport),
    corrections: createClient(CorrectionService, transport),
  };
}
