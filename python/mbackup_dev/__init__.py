"""Development tools that the product does not ship and no product module imports: a local
stack of real servers (SeaweedFS, embedded Milvus), the demo, and sample trees."""
