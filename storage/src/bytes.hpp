#pragma once

#include <cstdint>
#include <string>
#include <string_view>

// Big-endian integer and length-prefixed string helpers shared by keys and codecs.
namespace missive::storage::bytes {

template <class T>
void put_be(std::string& out, T x) {
  for (int i = sizeof(T) - 1; i >= 0; --i)
    out.push_back(static_cast<char>((static_cast<uint64_t>(x) >> (8 * i)) & 0xff));
}

/// Consumes sizeof(T) bytes from the front of `in`; false if there are too few.
template <class T>
bool get_be(std::string_view& in, T* x) {
  if (in.size() < sizeof(T))
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    v = (v << 8) | static_cast<uint8_t>(in[i]);
  *x = static_cast<T>(v);
  in.remove_prefix(sizeof(T));
  return true;
}

/// A string with a big-endian length of type L in front.
template <class L>
void put_str(std::string& out, std::string_view s) {
  put_be<L>(out, static_cast<L>(s.size()));
  out.append(s);
}

template <class L>
bool get_str(std::string_view& in, std::string* s) {
  L len = 0;
  if (!get_be<L>(in, &len) || in.size() < len)
    return false;
  s->assign(in.data(), len);
  in.remove_prefix(len);
  return true;
}

} // namespace missive::storage::bytes
