"""Knowledge bases: loaders per file type, cleaning, splitting with heading paths, batched
embedding, BM25 statistics, retrieval (vector, keyword, hybrid) and reranking."""
