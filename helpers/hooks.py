"""The course's evaluation hook for ``xtuner train`` on a CPU: XTuner's EvaluateChatHook without its repeats.

The cpu and tiny configs name it instead of ``EvaluateChatHook`` (xconfig's CPU edits); ``xtuner train`` imports
it from the config, so it runs inside XTuner's own training process.
"""

from __future__ import annotations

from xtuner.engine.hooks import EvaluateChatHook


class CourseEvaluateChatHook(EvaluateChatHook):
    """``EvaluateChatHook`` that answers all its questions in one batch and never twice with the same weights.

    XTuner's hook answers before training, every ``every_n_iters``, at every checkpoint, and once more after
    training. Two of those repeat an answer already in the log: after training (the last iteration has just
    answered, since it always writes a checkpoint), and before training in a resumed run (the checkpoint it
    resumes from answered when it was saved). It also answers one question at a time. On a CPU each round of
    answers costs seconds.
    """

    _answered_last_iter = False

    def __init__(self, *args, answer_before_train: bool = True, **kwargs):
        """``answer_before_train=False``: no answers before training either (a rerun of a config whose base model's
        answers before training are already in another run's log: 07's no-mix run)."""
        super().__init__(*args, **kwargs)
        self.answer_before_train = answer_before_train

    def _eval_language(self, runner, model, device, max_new_tokens=None, save_eval_output=False):
        """XTuner's answers and log lines, with the questions generated together (left-padded, one ``generate``)."""
        import torch

        tok = self.tokenizer
        prompts = [(self.system + self.instruction).format(input=text, round=1, **runner.cfg)
                   for text in self.evaluation_inputs]
        side, tok.padding_side = tok.padding_side, "left"
        batch = tok(prompts, return_tensors="pt", padding=True).to(device)
        tok.padding_side = side
        stops = [tok.eos_token_id] + [tok.convert_tokens_to_ids(w) for c in self.stop_criteria
                                      if len(tok.tokenize(w := c.stop_word)) == 1]
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, generation_config=self.gen_config,
                                 eos_token_id=sorted(set(stops)))
        texts = []
        for row, mask in zip(out, batch["attention_mask"]):
            answer = row[mask.shape[0]:].tolist()
            end = next((i + 1 for i, t in enumerate(answer) if t in stops), len(answer))
            texts.append(tok.decode(row[int((1 - mask).sum()):mask.shape[0]].tolist() + answer[:end]))
            runner.logger.info(f"Sample output:\n{texts[-1]}\n")
        if save_eval_output:
            self._save_eval_output(runner, [f"{text}\n" for text in texts])

    def _generate_samples(self, runner, max_new_tokens=None, save_eval_output=False):
        super()._generate_samples(runner, max_new_tokens, save_eval_output)
        self._answered_last_iter = True

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._answered_last_iter = False
        super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def before_train(self, runner):
        if runner.iter == 0 and self.answer_before_train:
            super().before_train(runner)
        elif runner.iter == 0:
            runner.logger.info("before_train in EvaluateChatHook: skipped (answer_before_train=False).")
        else:
            runner.logger.info(f"before_train in EvaluateChatHook: skipped (resumed at iteration {runner.iter}; "
                               "its answers are in the log of the run that saved it).")

    def after_train(self, runner):
        if self._answered_last_iter:
            runner.logger.info("after_train in EvaluateChatHook: skipped (the last iteration has just answered).")
        else:
            super().after_train(runner)
