"""The local backend: a resource-aware process pool run by one supervisor process."""
