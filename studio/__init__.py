"""The Streamlit studio. Pages are thin: they call backend.services."""
