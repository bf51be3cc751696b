"""gRPC plumbing shared by every service: server start and graceful drain (`serve`),
client channels (`channels`), settings objects from which every service builds its flags
(`settings`, shared fields in `flags`) and the readiness file (`readiness`)."""
