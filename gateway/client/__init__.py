"""The gateway's own upload client (``gateway upload``): tus over httpx, resumable."""
