"""What tests, benchmarks and a first try need in place of real services (a loopback OpenAI-compatible server)."""
