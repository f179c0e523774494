// One ListOps example: its tokens, its `Source` string and its value.
#include <algorithm>
#include <array>
#include <cstring>

#include "core/check.h"
#include "tasks/listops/listops.h"

namespace lra::listops {

namespace {

constexpr std::string_view kNames[] = {"",  "[MIN", "[MAX", "[MED", "[SM", "]", "0", "1",
                                       "2", "3",    "4",    "5",    "6",   "7", "8", "9"};

bool is_op(uint16_t id) { return id >= kMin && id <= kSm; }
bool is_digit(uint16_t id) { return id >= kDigit0 && id < kDigit0 + 10; }

// The tokeniser's character classes, looked up per byte of a Source that can be 20 kB long.
enum CharClass : uint8_t { kTokenChar, kSpaceChar, kOpenChar, kCloseChar };
constexpr std::array<uint8_t, 256> make_char_classes() {
  std::array<uint8_t, 256> t{};
  for (unsigned char c : {' ', '\t', '\n', '\r', '\v', '\f'}) t[c] = kSpaceChar;
  t['('] = kOpenChar;
  t[')'] = kCloseChar;
  return t;
}
constexpr std::array<uint8_t, 256> kCharClass = make_char_classes();

int apply(uint16_t op, int* args, size_t k) {
  switch (op) {
    case kMin: return *std::min_element(args, args + k);
    case kMax: return *std::max_element(args, args + k);
    case kSm: {
      int sum = 0;
      for (size_t i = 0; i < k; ++i) sum += args[i];
      return sum % 10;
    }
    default: {
      // int(np.median(args)): the middle value, or the truncated mean of the two middle values.
      std::sort(args, args + k);
      return k % 2 == 1 ? args[k / 2] : (args[k / 2 - 1] + args[k / 2]) / 2;
    }
  }
}

}  // namespace

uint16_t token_id(std::string_view token) {
  if (token.size() == 1) {
    const char c = token[0];
    if (c == ']' || c == 'X') return kClose;
    if (c >= '0' && c <= '9') return static_cast<uint16_t>(kDigit0 + (c - '0'));
    return kUnknown;
  }
  for (uint16_t id = kMin; id <= kSm; ++id)
    if (token == kNames[id]) return id;
  return kUnknown;
}

std::string_view token_name(uint16_t id) { return id < std::size(kNames) ? kNames[id] : ""; }

int evaluate(const uint16_t* tokens, size_t n) {
  // One stack holds the values of finished arguments and, below each open operator's arguments,
  // the marker -op (values are 0..9, so markers are the negative entries).
  std::vector<int> stack(n + 1);
  size_t top = 0, open = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint16_t id = tokens[i];
    if (id != kClose) {
      LRA_CHECK(open > 0 || top == 0,
                "ListOps tokens continue after the end of the tree at position {}", i);
      if (is_digit(id)) {
        stack[top++] = id - kDigit0;
      } else {
        LRA_CHECK(is_op(id), "token id {} at position {} is not a ListOps token", id, i);
        stack[top++] = -static_cast<int>(id);
        ++open;
      }
      continue;
    }
    LRA_CHECK(open > 0 && stack[top - 1] >= 0,
              "a `]` at position {} closes no operator with arguments", i);
    size_t start = top;
    while (stack[start - 1] >= 0) --start;
    const int v =
        apply(static_cast<uint16_t>(-stack[start - 1]), stack.data() + start, top - start);
    top = start;
    stack[top - 1] = v;
    --open;
  }
  LRA_CHECK(open == 0 && top == 1, "the ListOps tokens end before the tree does");
  return stack[0];
}

void append_source(const uint16_t* tokens, size_t n, std::string& out) {
  // An operator with k arguments opens k+1 parentheses before its token, so count arguments first.
  std::vector<uint32_t> args(n, 0);
  std::vector<size_t> opens;
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i] == kClose) {
      LRA_CHECK(!opens.empty(), "a `]` at position {} closes no operator", i);
      opens.pop_back();
      continue;
    }
    if (!opens.empty()) ++args[opens.back()];
    if (is_op(tokens[i])) opens.push_back(i);
  }
  LRA_CHECK(opens.empty(), "the ListOps tokens end before the tree does");
  // A tree of n tokens has n-1 pairs of parentheses (4 characters each) and its tokens take at most
  // 5 characters with their separator, so the text is written into that much room, then trimmed.
  const size_t at = out.size();
  out.resize(at + 9 * n);
  char* p = out.data() + at;
  auto put = [&p](std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  size_t depth = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint16_t id = tokens[i];
    if (id == kClose) {
      put(" ] )");
      // A finished argument closes the pair it forms with what came before it.
      if (--depth > 0) put(" )");
      continue;
    }
    LRA_CHECK(is_op(id) || is_digit(id), "token id {} at position {} is not a ListOps token", id,
              i);
    if (depth > 0) *p++ = ' ';
    if (is_op(id)) {
      for (uint32_t k = 0; k <= args[i]; ++k) put("( ");
      put(kNames[id]);
      ++depth;
    } else {
      *p++ = kNames[id][0];
      if (depth > 0) put(" )");
    }
  }
  out.resize(static_cast<size_t>(p - out.data()));
}

std::string to_source(const std::vector<uint16_t>& tokens) {
  std::string s;
  append_source(tokens.data(), tokens.size(), s);
  return s;
}

std::string tokenize_into(std::string_view source, std::vector<uint16_t>& out) {
  long depth = 0;
  const size_t start = out.size();
  const size_t n = source.size();
  auto cls = [&](size_t i) { return kCharClass[static_cast<unsigned char>(source[i])]; };
  auto unbalanced = [](size_t i) {
    return fmt::format("unbalanced parentheses: the `)` at character {} closes nothing", i + 1);
  };
  std::string stripped;
  for (size_t i = 0; i < n;) {
    switch (cls(i)) {
      case kSpaceChar: ++i; continue;
      case kOpenChar:
        ++depth;
        ++i;
        continue;
      case kCloseChar:
        if (--depth < 0) return unbalanced(i);
        ++i;
        continue;
      default: break;
    }
    size_t end = i + 1;
    while (end < n && cls(end) == kTokenChar) ++end;
    std::string_view token = source.substr(i, end - i);
    if (end < n && cls(end) != kSpaceChar) {
      // LRA deletes every parenthesis before splitting, so `x)y` reads as `xy`.
      stripped.assign(token);
      for (; end < n && cls(end) != kSpaceChar; ++end) {
        if (cls(end) == kTokenChar) {
          stripped += source[end];
        } else if (cls(end) == kOpenChar) {
          ++depth;
        } else if (--depth < 0) {
          return unbalanced(end);
        }
      }
      token = stripped;
    }
    i = end;
    if (token.empty()) continue;
    const uint16_t id = token_id(token);
    if (id == kUnknown)
      return fmt::format(
          "unknown token '{}' in Source (ListOps has [MIN [MAX [MED [SM ] X 0-9; LRA "
          "would map it to its out-of-vocabulary id)",
          token);
    out.push_back(id);
  }
  if (depth != 0) return fmt::format("unbalanced parentheses: {} `(` never closed", depth);
  if (out.size() == start) return "empty Source (no tokens)";
  return "";
}

std::vector<uint16_t> tokenize(std::string_view source) {
  std::vector<uint16_t> ids;
  const std::string problem = tokenize_into(source, ids);
  LRA_CHECK(problem.empty(), "cannot tokenise a ListOps Source: {}", problem);
  return ids;
}

}  // namespace lra::listops
