"""The course's web chat demo for a merged model, a streamlit app of its own.

    streamlit run helpers/web_demo.py --server.address 127.0.0.1 -- --model MERGED --template qwen_chat

Streaming replies, the chat history, and in the sidebar the system prompt, max new tokens and temperature
(0 = greedy, as everywhere in the course). Every turn is built with the same xtuner prompt template as training
(``chat.build_prompt`` with the earlier turns). Notebook 08 starts it with ``serving.start_web_demo``.
"""

from __future__ import annotations

import argparse
import sys

import streamlit as st

from helpers import chat


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chat with a merged model in the browser.")
    parser.add_argument("--model", required=True, help="the merged model folder (notebook 05's merged/)")
    parser.add_argument("--template", required=True, help="the xtuner prompt template used in training")
    parser.add_argument("--system", default="", help="the default system prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--trust-remote-code", action="store_true", help="InternLM2 models need it")
    parser.add_argument("--title", default="XTuner 课程 · 和微调后的模型聊天")
    return parser.parse_args(argv)


@st.cache_resource(show_spinner="正在载入模型…")
def _load(path: str, trust_remote_code: bool, device: str) -> chat.ChatModel:
    return chat.load_chat_model(path, trust_remote_code=trust_remote_code, device=device)


def _sidebar(args: argparse.Namespace) -> tuple[str, int, float]:
    with st.sidebar:
        st.caption(f"模型：`{args.model}`  \n对话模板：`{args.template}`")
        system = st.text_area("系统提示词（system）", value=args.system)
        max_new_tokens = st.slider("最多生成的 token 数", 16, 1024, args.max_new_tokens, step=16)
        temperature = st.slider("温度（0 = 贪心解码）", 0.0, 1.5, 0.0, step=0.1)
        if st.button("清空对话"):
            st.session_state.history = []
    return system, max_new_tokens, temperature


def _main() -> None:
    args = _parse_args(sys.argv[1:])
    st.set_page_config(page_title=args.title)
    st.title(args.title)
    model = _load(args.model, args.trust_remote_code, args.device)
    system, max_new_tokens, temperature = _sidebar(args)
    history = st.session_state.setdefault("history", [])  # [(question, answer), ...]
    for question, answer in history:
        st.chat_message("user").write(question)
        st.chat_message("assistant").write(answer)
    question = st.chat_input("输入你的问题，回车发送")
    if not question:
        return
    st.chat_message("user").write(question)
    prompt = chat.build_prompt(args.template, question, system, history=history)
    with st.chat_message("assistant"):
        answer = st.write_stream(chat.stream_answer(model, prompt, args.template, max_new_tokens, temperature))
    history.append((question, (answer or "").strip()))


if __name__ == "__main__":  # streamlit runs the file as __main__; importing it starts nothing
    _main()
