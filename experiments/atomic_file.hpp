// Writing a file so that a reader, or a run resumed after a kill, sees either its old content or
// its new content, never a partial one: the bytes go to "<path>.tmp", are flushed to disk, and the
// temporary is renamed over the target.
#pragma once

#include <filesystem>
#include <string_view>

namespace xgrad {

// Replaces `path` with `bytes`. The temporary is fsynced before the rename and the directory after
// it, so the new content survives a power loss once this returns. On failure the target is left
// as it was, the temporary is removed, and a std::runtime_error names the file and the reason.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

}  // namespace xgrad
