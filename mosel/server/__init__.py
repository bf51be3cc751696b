"""gRPC plumbing shared by every service: server start and graceful drain (`serve`),
client channels (`channels`), service flags (`flags`) and the readiness file (`readiness`)."""
