import numpy as np
import pytest

from ray_lcb.serving.protocol import parse_request


def test_parse_chat_request_undoes_arrow_arrays():
    # Rows coming through Ray Data carry the messages list as a NumPy object array.
    request = {"messages": np.array([{"role": "user", "content": "hi"}], dtype=object), "max_tokens": np.int64(5),
               "stop": np.array(["\n"]), "request_id": "0", "idx_in_batch": 0}
    parsed = parse_request(request, chat=True)
    assert parsed.messages == [{"role": "user", "content": "hi"}]
    assert parsed.params.max_tokens == 5 and parsed.params.stop == ["\n"] and parsed.params.greedy


@pytest.mark.parametrize("request_dict, match", [
    ({"messages": []}, "non-empty 'messages'"),
    ({"messages": [{"role": "user"}]}, "string 'content'"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "top_p": 2}, "top_p"),
    ({"messages": [{"role": "user", "content": "x"}], "beam_width": 3}, "beam_width"),
])
def test_bad_requests_raise_value_error(request_dict, match):
    with pytest.raises(ValueError, match=match):
        parse_request(request_dict, chat=True)
    with pytest.raises(ValueError, match="prompt"):
        parse_request({"prompt": ""}, chat=False)
