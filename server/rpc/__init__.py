"""RPC adapters: servicers that translate proto <-> domain and call the logic, nothing else;
interceptors for authentication and the error mapping; request validation with protovalidate."""
