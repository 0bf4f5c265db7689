"""rsched's REST API (Starlette + msgspec), served by uvicorn (``rsched api``).

Owns: the HTTP surface under /api/v1 (see docs/api.md). Must not: import anything that
imports it back; rsched never imports api (the CLI starts it by its import string).
"""
