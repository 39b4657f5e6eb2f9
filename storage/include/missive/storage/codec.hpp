#pragma once

#include <string>
#include <string_view>

#include "missive/storage/records.hpp"

// Value encodings. Each value starts with a format version byte so that a later format can
// be read next to the old one. Decoders return false on anything malformed; they never throw.
namespace missive::storage::codec {

std::string encode(const entry& x);
std::string encode(const mailbox_meta& x);
std::string encode(const dedup_record& x);
std::string encode(const device_record& x);
std::string encode(const push_record& x);
std::string encode(const resume_record& x);
std::string encode(const group_record& x);

[[nodiscard]] bool decode(std::string_view in, entry* out);
[[nodiscard]] bool decode(std::string_view in, mailbox_meta* out);
[[nodiscard]] bool decode(std::string_view in, dedup_record* out);
[[nodiscard]] bool decode(std::string_view in, device_record* out);
[[nodiscard]] bool decode(std::string_view in, push_record* out);
[[nodiscard]] bool decode(std::string_view in, resume_record* out);
[[nodiscard]] bool decode(std::string_view in, group_record* out);

} // namespace missive::storage::codec
