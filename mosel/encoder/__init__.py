"""The encoder side: run one modality's encoder of one model on one device."""
