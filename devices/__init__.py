"""The registry and the vocabulary: vendors, device profiles, devices, interning."""
