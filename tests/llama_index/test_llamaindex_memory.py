"""``MemRerank`` as a ``node_postprocessors`` entry of a ``VectorMemoryBlock`` inside
``llama_index.core.memory.Memory`` (vector store: Qdrant in process; embedding: the tests'
hashed words), scored by the core's vLLM backend against the loopback rerank server, whose
scores the test scripts per text: the memories reaching the chat context are the reranked
ones, in reranked order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from li_testkit import HostedCore
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import Memory
from llama_index.core.memory.memory_blocks import VectorMemoryBlock
from llama_index.core.schema import MetadataMode
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import AsyncQdrantClient, QdrantClient
from servers import RerankServer, untemplate
from servers.clients import scores_by_text

from llama_index.postprocessor.memreranker import MemRerank

pytestmark = [
    pytest.mark.timeout(60),
    # Qdrant's in-process mode says so when LlamaIndex creates its payload index: not ours.
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

SESSION = "alice-session"
QUERY = "What does the user like to drink?"
MEMORIES = [
    "User prefers Jiangxiang-flavoured baijiu, especially Moutai.",
    "User stopped drinking alcohol in October.",
    "User's sister Anna lives in Berlin.",
    "User booked a flight to Berlin for December 18.",
    "Anna asked the user to bring green tea from Hangzhou.",
    "User works as a backend developer in Hangzhou.",
    "User's dog Biscuit stays with a neighbour during trips.",
    "User drinks oolong tea every afternoon at work.",
]
# The reranker's favourites, best first.
BEST = [MEMORIES[6], MEMORIES[4], MEMORIES[7]]


def stored(text: str) -> str:
    """A memory as the block stores it: one node per message batch, each message wrapped."""
    return f"<message role='user'>{text}</message>"


def block(
    core: Any, embed_model: BaseEmbedding, *, postprocess: bool, top_k: int
) -> VectorMemoryBlock:
    store = QdrantVectorStore(
        collection_name="memories",
        client=QdrantClient(location=":memory:"),
        aclient=AsyncQdrantClient(location=":memory:"),
    )
    processors = [MemRerank(reranker=core, top_n=3, metadata_mode=MetadataMode.NONE)]
    return VectorMemoryBlock(
        name="memories",
        vector_store=store,
        embed_model=embed_model,
        similarity_top_k=top_k,
        node_postprocessors=processors if postprocess else [],
    )


async def fill(memory_block: VectorMemoryBlock) -> None:
    for text in MEMORIES:  # as Memory flushes them: one batch each, tagged with the session
        await memory_block.aput([ChatMessage(role="user", content=text)], session_id=SESSION)


def memories_in_context(messages: list[ChatMessage]) -> list[str]:
    """The memory texts of the chat context, in the order they appear there."""
    context = "\n".join(message.content or "" for message in messages)
    found = [(context.find(stored(text)), text) for text in MEMORIES if stored(text) in context]
    return [text for _, text in sorted(found)]


@pytest.fixture
def memory(
    hosted_core: HostedCore, rerank_server: RerankServer, embed_model: BaseEmbedding
) -> Memory:
    rerank_server.default = scores_by_text(
        {stored(text): 0.9 - 0.1 * i for i, text in enumerate(BEST)}
    )
    memory_block = block(hosted_core(), embed_model, postprocess=True, top_k=len(MEMORIES))
    asyncio.run(fill(memory_block))
    return Memory.from_defaults(session_id=SESSION, memory_blocks=[memory_block])


def test_memory_get_puts_the_reranked_memories_in_context(
    memory: Memory, rerank_server: RerankServer
) -> None:
    rerank_server.requests.clear()
    messages = memory.get(input=QUERY)
    assert memories_in_context(messages) == BEST
    assert len(rerank_server.requests) == 1
    pair = untemplate(rerank_server.last.body["query"], rerank_server.last.body["documents"])
    # The block's query (the text of its last messages) and its nodes' texts, as stored.
    assert pair.query == QUERY
    assert sorted(pair.documents) == sorted(stored(text) for text in MEMORIES)


async def test_memory_aget_gives_the_same(memory: Memory) -> None:
    assert memories_in_context(await memory.aget(input=QUERY)) == BEST


async def test_the_vector_search_alone_would_put_others(
    hosted_core: HostedCore, embed_model: BaseEmbedding
) -> None:
    """The same memories without the postprocessor: the block's own top 3 differ."""
    plain = block(hosted_core(), embed_model, postprocess=False, top_k=3)
    await fill(plain)
    memory = Memory.from_defaults(session_id=SESSION, memory_blocks=[plain])
    vector_top = memories_in_context(await memory.aget(input=QUERY))
    assert len(vector_top) == 3 and vector_top != BEST


def test_by_default_the_metadata_is_scored_too(
    hosted_core: HostedCore, rerank_server: RerankServer, embed_model: BaseEmbedding
) -> None:
    """MetadataMode.EMBED (the postprocessor's default) scores the block's session_id
    line with each memory: why the recipe passes MetadataMode.NONE."""
    memory_block = block(hosted_core(), embed_model, postprocess=False, top_k=2)
    memory_block.node_postprocessors = [MemRerank(reranker=hosted_core(), top_n=1)]
    asyncio.run(fill(memory_block))
    Memory.from_defaults(session_id=SESSION, memory_blocks=[memory_block]).get(input=QUERY)
    body = rerank_server.last.body
    documents = untemplate(body["query"], body["documents"]).documents
    assert len(documents) == 2
    assert all(d.startswith(f"session_id: {SESSION}\n\n<message role='user'>") for d in documents)
