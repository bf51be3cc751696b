"""The selection service's runtime: turning wire requests into jobs (`requests`), the dispatcher
that runs rounds on encoder lanes (`dispatcher`), the encoder pool (`encoder_pool`), the served
model and its profiles (`served_model`, `profile_sync`), statistics (`stats`) and the gRPC
servicer (`servicer`)."""
