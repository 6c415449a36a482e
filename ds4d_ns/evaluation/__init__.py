"""Scoring 4D results by the Consistent4D protocol (``ds4d-eval``); see ``protocol`` for the definitions."""
