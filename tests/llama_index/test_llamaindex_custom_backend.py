"""The README's "Writing a backend" example through ``MemRerank(reranker=...)``."""

from __future__ import annotations

from custom_backend import keyword_backend
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index.postprocessor.memreranker import MemRerank
from memreranker import MemReranker

QUERY = "What does the user like to drink?"
TEXTS = ["User rows a boat.", "User likes to drink tea.", "Tea is what the user likes."]


async def test_a_users_backend_through_the_postprocessor() -> None:
    core = MemReranker(backend=keyword_backend(), on_error="raise")
    want = [(r.document, r.score) for r in core.rerank(QUERY, TEXTS)]
    postprocessor = MemRerank(reranker=core)
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.1) for t in TEXTS]
    got = postprocessor.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.get_content(), n.score) for n in got] == want
    assert want[0][0] == TEXTS[1]
    again = await postprocessor.apostprocess_nodes(nodes, query_str=QUERY)
    assert [n.score for n in again] == [n.score for n in got]
