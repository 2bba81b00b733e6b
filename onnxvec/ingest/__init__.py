"""Registering documents and the worker's pipeline that chunks, embeds and stores them."""
