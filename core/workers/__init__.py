"""Workers: who they are (the registry), how the core reaches a connected one (links), and which one
takes a job (placement)."""
