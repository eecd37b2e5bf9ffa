"""What pages, the CLI and the API call. Every function takes the acting ``Actor``."""
