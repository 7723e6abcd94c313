// What every generated op (generated/op_binding.h) is made of: the handle tables, the readers that
// turn a JS value into a C++ argument (each names the argument or field it reads when it fails),
// the writers that turn a result into a JS value, and the one error guard.
//
// Design (after tch-rs and TorchSharp):
//  - Tensors live in one handle table keyed by integer ids. Every op returns a fresh handle;
//    freeing a handle drops that reference only (views keep their storage alive).
//  - Every op runs inside `guarded`, which turns c10::Error, std::exception and anything else into
//    a JS Error naming the op, so no libtorch failure can abort the process.
//  - Lifetimes (scopes) are managed by the TypeScript layer; this file only counts.
#pragma once

#include <napi.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace compnet::binding {

inline std::unordered_map<int64_t, at::Tensor> g_tensors;
inline std::unordered_map<int64_t, std::unique_ptr<torch::optim::Optimizer>> g_optimizers;
// Frozen TorchScript modules (inference plans), keyed like tensors.
inline std::unordered_map<int64_t, torch::jit::Module> g_modules;
inline int64_t g_next_id = 1;

// "argument 'x'" or "field 'args.bn1.weight'": `what` is a top-level argument name or a dotted path.
inline std::string describe(const std::string& what) {
  return (what.find('.') == std::string::npos ? "argument '" : "field '") + what + "'";
}
inline std::string kindOf(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return "a number";
  if (v.IsBoolean()) return "a boolean";
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  return "an object";
}
[[noreturn]] inline void badValue(const Napi::Value& v, const std::string& what, const char* expected) {
  throw std::invalid_argument(describe(what) + " must be " + expected + ", got " + kindOf(v));
}

// ---- readers ------------------------------------------------------------------------------------

inline double readDouble(const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) badValue(v, what, "a number");
  return v.As<Napi::Number>().DoubleValue();
}
inline int64_t readInt(const Napi::Value& v, const std::string& what) {
  const double d = readDouble(v, what);
  if (std::trunc(d) != d) {
    std::ostringstream s;
    s << describe(what) << " must be an integer, got " << d;
    throw std::invalid_argument(s.str());
  }
  return static_cast<int64_t>(d);
}
inline bool readBool(const Napi::Value& v, const std::string& what) {
  if (!v.IsBoolean()) badValue(v, what, "a boolean");
  return v.As<Napi::Boolean>().Value();
}
inline std::string readString(const Napi::Value& v, const std::string& what) {
  if (!v.IsString()) badValue(v, what, "a string");
  return v.As<Napi::String>().Utf8Value();
}
// A handle that is not looked up (freeing an unknown handle is a no-op).
inline int64_t readId(const Napi::Value& v, const std::string& what) { return readInt(v, what); }

template <typename Table>
auto& lookup(Table& table, const Napi::Value& v, const std::string& what, const char* kind) {
  if (!v.IsNumber()) badValue(v, what, (std::string("a ") + kind + " handle").c_str());
  const int64_t id = v.As<Napi::Number>().Int64Value();
  auto it = table.find(id);
  if (it == table.end())
    throw std::invalid_argument(describe(what) + ": " + kind + " handle " + std::to_string(id) + " is not live (already disposed)");
  return it->second;
}
// A reference into the table: stays valid while the handle lives (rehashing keeps references).
inline at::Tensor& readTensor(const Napi::Value& v, const std::string& what) { return lookup(g_tensors, v, what, "tensor"); }
// null or undefined: an undefined tensor.
inline at::Tensor readOptionalTensor(const Napi::Value& v, const std::string& what) {
  if (v.IsNull() || v.IsUndefined()) return at::Tensor();
  return readTensor(v, what);
}
inline torch::optim::Optimizer& readOptimizer(const Napi::Value& v, const std::string& what) {
  return *lookup(g_optimizers, v, what, "optimizer");
}
inline torch::jit::Module& readModule(const Napi::Value& v, const std::string& what) { return lookup(g_modules, v, what, "module"); }

inline Napi::TypedArray readTypedArray(const Napi::Value& v, const std::string& what) {
  if (!v.IsTypedArray()) badValue(v, what, "a typed array");
  return v.As<Napi::TypedArray>();
}
inline Napi::Buffer<char> readBuffer(const Napi::Value& v, const std::string& what) {
  if (!v.IsBuffer()) badValue(v, what, "a Buffer");
  return v.As<Napi::Buffer<char>>();
}

// Element k is read as `what[k]`.
template <typename T, typename Read>
std::vector<T> readArray(const Napi::Value& v, const std::string& what, Read&& read) {
  if (!v.IsArray()) badValue(v, what, "an array");
  const auto arr = v.As<Napi::Array>();
  std::vector<T> out;
  out.reserve(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); ++k) out.push_back(read(arr.Get(k), what + "[" + std::to_string(k) + "]"));
  return out;
}
// null or undefined: nullopt.
template <typename T, typename Read>
c10::optional<T> readOptional(const Napi::Value& v, const std::string& what, Read&& read) {
  if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
  return read(v, what);
}
// A plain object with no fields but `fields`: a misspelt optional field would otherwise read as absent.
inline Napi::Object readObject(const Napi::Value& v, const std::string& what, std::initializer_list<const char*> fields) {
  if (!v.IsObject() || v.IsArray()) badValue(v, what, "an object");
  const auto o = v.As<Napi::Object>();
  const auto names = o.GetPropertyNames();
  for (uint32_t k = 0; k < names.Length(); ++k) {
    const std::string name = names.Get(k).As<Napi::String>().Utf8Value();
    bool known = false;
    for (const char* f : fields) known = known || name == f;
    if (!known) {
      std::string list;
      for (const char* f : fields) list += (list.empty() ? "" : ", ") + std::string(f);
      throw std::invalid_argument(describe(what) + " has an unknown field '" + name + "' (expected " + list + ")");
    }
  }
  return o;
}

// ---- writers ------------------------------------------------------------------------------------

inline Napi::Value writeTensor(const Napi::Env& env, at::Tensor t) {
  const int64_t id = g_next_id++;
  g_tensors.emplace(id, std::move(t));
  return Napi::Number::New(env, static_cast<double>(id));
}
inline Napi::Value writeOptionalTensor(const Napi::Env& env, const at::Tensor& t) {
  return t.defined() ? writeTensor(env, t) : env.Null();
}
inline Napi::Value writeOptimizer(const Napi::Env& env, std::unique_ptr<torch::optim::Optimizer> opt) {
  const int64_t id = g_next_id++;
  g_optimizers.emplace(id, std::move(opt));
  return Napi::Number::New(env, static_cast<double>(id));
}
inline Napi::Value writeModule(const Napi::Env& env, torch::jit::Module m) {
  const int64_t id = g_next_id++;
  g_modules.emplace(id, std::move(m));
  return Napi::Number::New(env, static_cast<double>(id));
}
template <typename T>
Napi::Value writeNumber(const Napi::Env& env, T v) {
  return Napi::Number::New(env, static_cast<double>(v));
}
inline Napi::Value writeBool(const Napi::Env& env, bool v) { return Napi::Boolean::New(env, v); }
inline Napi::Value writeString(const Napi::Env& env, const std::string& v) { return Napi::String::New(env, v); }
inline Napi::Value writeInts(const Napi::Env& env, const std::vector<int64_t>& v) {
  auto arr = Napi::Array::New(env, v.size());
  for (size_t k = 0; k < v.size(); ++k) arr.Set(static_cast<uint32_t>(k), Napi::Number::New(env, static_cast<double>(v[k])));
  return arr;
}
// Bytes (e.g. a serialised archive) as a Node Buffer.
inline Napi::Value writeBuffer(const Napi::Env& env, const std::string& bytes) { return Napi::Buffer<char>::Copy(env, bytes.data(), bytes.size()); }

// ---- the error guard ----------------------------------------------------------------------------

// "op: message", once: compnet's kernels name their op in their messages already.
inline std::string failure(const char* op, const std::string& msg) {
  const std::string prefix = std::string(op) + ": ";
  return msg.rfind(prefix, 0) == 0 ? msg : prefix + msg;
}

// Runs an op's body (given the env) after checking it got at most `arity` arguments, and turns any
// native failure into a JS Error "op: message".
template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, const char* op, size_t arity, F&& body) {
  const Napi::Env env = info.Env();
  try {
    if (info.Length() > arity)
      throw std::invalid_argument("takes " + std::to_string(arity) + " arguments, got " + std::to_string(info.Length()));
    return body(env);
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, failure(op, e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, failure(op, e.what()));
  } catch (...) {
    throw Napi::Error::New(env, failure(op, "unknown native error"));
  }
}

}  // namespace compnet::binding
