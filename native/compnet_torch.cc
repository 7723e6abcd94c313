// compnet's native layer: a thin N-API binding to libtorch.
//
// Design (after tch-rs and TorchSharp):
//  - Tensors live in one handle table keyed by integer ids. Every op returns a fresh
//    handle; freeing a handle drops that reference only (views keep their storage alive).
//  - Every exported function runs inside one error guard that turns c10::Error,
//    std::exception and anything else into a JS Error, so no libtorch failure can abort
//    the process.
//  - Optimizers are libtorch's own (one native call per step).
//  - Lifetimes (scopes) are managed by the TypeScript layer; this file only counts.
#include <napi.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "batch_norm_act.h"
#include "inverted_branch.h"
#include "inverted_middle.h"

#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

std::unordered_map<int64_t, at::Tensor> g_tensors;
std::unordered_map<int64_t, std::unique_ptr<torch::optim::Optimizer>> g_optimizers;
// Frozen TorchScript modules (inference plans), keyed like tensors.
std::unordered_map<int64_t, torch::jit::Module> g_modules;
int64_t g_next_id = 1;

int64_t put(at::Tensor t) {
  const int64_t id = g_next_id++;
  g_tensors.emplace(id, std::move(t));
  return id;
}

Napi::Value handle(const Napi::Env& env, at::Tensor t) {
  return Napi::Number::New(env, static_cast<double>(put(std::move(t))));
}

at::Tensor& tensorArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber())
    throw std::invalid_argument("argument " + std::to_string(i) + " must be a tensor handle");
  const int64_t id = info[i].As<Napi::Number>().Int64Value();
  auto it = g_tensors.find(id);
  if (it == g_tensors.end())
    throw std::invalid_argument("tensor handle " + std::to_string(id) + " is not live (already disposed)");
  return it->second;
}

// An optional tensor argument: null/undefined become an undefined tensor.
at::Tensor optTensorArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return at::Tensor();
  return tensorArg(info, i);
}

std::vector<int64_t> intsArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsArray())
    throw std::invalid_argument("argument " + std::to_string(i) + " must be an array of integers");
  auto arr = info[i].As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); ++k) out[k] = arr.Get(k).As<Napi::Number>().Int64Value();
  return out;
}

std::vector<at::Tensor> tensorsArg(const Napi::CallbackInfo& info, size_t i) {
  auto ids = intsArg(info, i);
  std::vector<at::Tensor> out;
  out.reserve(ids.size());
  for (auto id : ids) {
    auto it = g_tensors.find(id);
    if (it == g_tensors.end())
      throw std::invalid_argument("tensor handle " + std::to_string(id) + " is not live (already disposed)");
    out.push_back(it->second);
  }
  return out;
}

double numArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber())
    throw std::invalid_argument("argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}
int64_t intArg(const Napi::CallbackInfo& info, size_t i) { return static_cast<int64_t>(numArg(info, i)); }
bool boolArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsBoolean())
    throw std::invalid_argument("argument " + std::to_string(i) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}
std::string strArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsString())
    throw std::invalid_argument("argument " + std::to_string(i) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

at::ScalarType dtypeOf(const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "float64") return at::kDouble;
  if (s == "int64") return at::kLong;
  if (s == "int32") return at::kInt;
  if (s == "uint8") return at::kByte;
  if (s == "bool") return at::kBool;
  throw std::invalid_argument("unknown dtype '" + s + "' (expected float32, float64, int64, int32, uint8 or bool)");
}
std::string dtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return std::string(c10::toString(t));
  }
}

Napi::Value intsValue(const Napi::Env& env, at::IntArrayRef v) {
  auto arr = Napi::Array::New(env, v.size());
  for (size_t k = 0; k < v.size(); ++k) arr.Set(static_cast<uint32_t>(k), Napi::Number::New(env, static_cast<double>(v[k])));
  return arr;
}

// The one error guard: every exported function goes through it.
template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, const char* op, F&& body) {
  const Napi::Env env = info.Env();
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    throw Napi::Error::New(env, std::string(op) + ": " + msg);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(op) + ": " + e.what());
  } catch (...) {
    throw Napi::Error::New(env, std::string(op) + ": unknown native error");
  }
}

#define EXPORT(name, ...)                                                                      \
  exports.Set(#name, Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value { \
                return guarded(info, #name, [&]() -> Napi::Value { __VA_ARGS__ });             \
              }))

#define UNARY(name, expr) EXPORT(name, { auto& a = tensorArg(info, 0); return handle(info.Env(), (expr)); })
#define BINARY(name, expr) \
  EXPORT(name, { auto& a = tensorArg(info, 0); auto& b = tensorArg(info, 1); return handle(info.Env(), (expr)); })

torch::optim::Optimizer& optimizerArg(const Napi::CallbackInfo& info, size_t i) {
  const int64_t id = intArg(info, i);
  auto it = g_optimizers.find(id);
  if (it == g_optimizers.end()) throw std::invalid_argument("optimizer handle " + std::to_string(id) + " is not live");
  return *it->second;
}

struct GroupSpec {
  std::vector<at::Tensor> params;
  double lr;
  double weightDecay;
};

std::vector<GroupSpec> groupsArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsArray()) throw std::invalid_argument("parameter groups must be an array");
  auto arr = info[i].As<Napi::Array>();
  std::vector<GroupSpec> out;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    auto g = arr.Get(k).As<Napi::Object>();
    GroupSpec spec;
    auto ids = g.Get("params").As<Napi::Array>();
    for (uint32_t j = 0; j < ids.Length(); ++j) {
      const int64_t id = ids.Get(j).As<Napi::Number>().Int64Value();
      auto it = g_tensors.find(id);
      if (it == g_tensors.end()) throw std::invalid_argument("parameter group " + std::to_string(k) + ": tensor handle is not live");
      spec.params.push_back(it->second);
    }
    spec.lr = g.Get("lr").As<Napi::Number>().DoubleValue();
    spec.weightDecay = g.Get("weightDecay").As<Napi::Number>().DoubleValue();
    out.push_back(std::move(spec));
  }
  return out;
}

int64_t putOptimizer(std::unique_ptr<torch::optim::Optimizer> opt) {
  const int64_t id = g_next_id++;
  g_optimizers.emplace(id, std::move(opt));
  return id;
}

template <typename Options>
Options& groupOptions(torch::optim::OptimizerParamGroup& group) {
  return static_cast<Options&>(group.options());
}

void setGroupLr(torch::optim::Optimizer& opt, size_t group, double lr) {
  auto& groups = opt.param_groups();
  if (group >= groups.size()) throw std::invalid_argument("optimizer has no parameter group " + std::to_string(group));
  auto& o = groups[group].options();
  if (auto* a = dynamic_cast<torch::optim::AdamOptions*>(&o)) a->lr(lr);
  else if (auto* w = dynamic_cast<torch::optim::AdamWOptions*>(&o)) w->lr(lr);
  else if (auto* s = dynamic_cast<torch::optim::SGDOptions*>(&o)) s->lr(lr);
  else throw std::invalid_argument("unsupported optimizer options");
}

// Frozen TorchScript plans reuse their output buffers across batch sizes, and libtorch 1.13 warns
// on every such resize (a deprecation notice for behaviour it still performs correctly): one line
// per op per batch, thousands in an evaluation. Drop that notice; pass every other warning on.
class QuietResizeWarnings : public c10::WarningHandler {
 public:
  void process(const c10::SourceLocation& where, const std::string& msg, const bool verbatim) override {
    if (msg.find("was resized since it had shape") != std::string::npos) return;
    c10::WarningHandler::process(where, msg, verbatim);
  }
};
QuietResizeWarnings g_quiet_resize;

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  c10::Warning::set_warning_handler(&g_quiet_resize);
  // ---- library facts and global settings -------------------------------------------------
  EXPORT(version, {
    auto o = Napi::Object::New(info.Env());
    o.Set("torch", TORCH_VERSION);
    o.Set("cxx11Abi", Napi::Boolean::New(info.Env(), _GLIBCXX_USE_CXX11_ABI == 1));
    o.Set("parallel", at::get_parallel_info());
    return o;
  });
  EXPORT(setNumThreads, { at::set_num_threads(static_cast<int>(intArg(info, 0))); return info.Env().Undefined(); });
  EXPORT(getNumThreads, { return Napi::Number::New(info.Env(), at::get_num_threads()); });
  EXPORT(manualSeed, { torch::manual_seed(static_cast<uint64_t>(intArg(info, 0))); return info.Env().Undefined(); });
  EXPORT(gradEnabled, { return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled()); });
  EXPORT(setGradEnabled, {
    const bool prev = at::GradMode::is_enabled();
    at::GradMode::set_enabled(boolArg(info, 0));
    return Napi::Boolean::New(info.Env(), prev);
  });
  EXPORT(liveTensors, { return Napi::Number::New(info.Env(), static_cast<double>(g_tensors.size())); });
  EXPORT(liveOptimizers, { return Napi::Number::New(info.Env(), static_cast<double>(g_optimizers.size())); });
  EXPORT(liveModules, { return Napi::Number::New(info.Env(), static_cast<double>(g_modules.size())); });

  // ---- handles and data in/out ------------------------------------------------------------
  EXPORT(free, {
    g_tensors.erase(intArg(info, 0));
    return info.Env().Undefined();
  });
  EXPORT(fromArray, {
    if (!info[0].IsTypedArray()) throw std::invalid_argument("data must be a typed array");
    auto ta = info[0].As<Napi::TypedArray>();
    auto shape = intsArg(info, 1);
    const auto dtype = dtypeOf(strArg(info, 2));
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
    if (ta.ByteLength() != bytes)
      throw std::invalid_argument("data has " + std::to_string(ta.ByteLength()) + " bytes but shape x dtype needs " +
                                  std::to_string(bytes));
    auto* ptr = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    return handle(info.Env(), torch::from_blob(ptr, shape, torch::TensorOptions().dtype(dtype)).clone());
  });
  EXPORT(toArray, {
    // Copying out always goes through a contiguous CPU copy (views may be strided).
    auto t = tensorArg(info, 0).detach().to(at::kCPU).contiguous();
    const size_t bytes = t.numel() * t.element_size();
    auto buf = Napi::ArrayBuffer::New(info.Env(), bytes);
    if (bytes) std::memcpy(buf.Data(), t.data_ptr(), bytes);
    const size_t n = static_cast<size_t>(t.numel());
    switch (t.scalar_type()) {
      case at::kFloat: return Napi::Float32Array::New(info.Env(), n, buf, 0);
      case at::kDouble: return Napi::Float64Array::New(info.Env(), n, buf, 0);
      case at::kLong: return Napi::BigInt64Array::New(info.Env(), n, buf, 0);
      case at::kInt: return Napi::Int32Array::New(info.Env(), n, buf, 0);
      case at::kByte: case at::kBool: return Napi::Uint8Array::New(info.Env(), n, buf, 0);
      default: throw std::invalid_argument("cannot copy out dtype " + dtypeName(t.scalar_type()));
    }
  });
  EXPORT(item, { return Napi::Number::New(info.Env(), tensorArg(info, 0).item<double>()); });
  EXPORT(shape, { return intsValue(info.Env(), tensorArg(info, 0).sizes()); });
  EXPORT(dtype, { return Napi::String::New(info.Env(), dtypeName(tensorArg(info, 0).scalar_type())); });
  EXPORT(isChannelsLast, {
    return Napi::Boolean::New(info.Env(), tensorArg(info, 0).is_contiguous(at::MemoryFormat::ChannelsLast));
  });

  // ---- creation -----------------------------------------------------------------------------
  EXPORT(zeros, { return handle(info.Env(), torch::zeros(intsArg(info, 0), torch::dtype(dtypeOf(strArg(info, 1))))); });
  EXPORT(ones, { return handle(info.Env(), torch::ones(intsArg(info, 0), torch::dtype(dtypeOf(strArg(info, 1))))); });
  EXPORT(full, {
    return handle(info.Env(), torch::full(intsArg(info, 0), numArg(info, 1), torch::dtype(dtypeOf(strArg(info, 2)))));
  });
  EXPORT(randn, { return handle(info.Env(), torch::randn(intsArg(info, 0))); });
  EXPORT(rand, { return handle(info.Env(), torch::rand(intsArg(info, 0))); });
  EXPORT(randint, { return handle(info.Env(), torch::randint(intArg(info, 0), intsArg(info, 1), torch::dtype(at::kLong))); });
  EXPORT(randperm, { return handle(info.Env(), torch::randperm(intArg(info, 0), torch::dtype(at::kLong))); });

  // ---- autograd -----------------------------------------------------------------------------
  EXPORT(setRequiresGrad, {
    tensorArg(info, 0).set_requires_grad(boolArg(info, 1));
    return info.Env().Undefined();
  });
  EXPORT(requiresGrad, { return Napi::Boolean::New(info.Env(), tensorArg(info, 0).requires_grad()); });
  EXPORT(grad, {
    const auto& g = tensorArg(info, 0).grad();
    if (!g.defined()) return info.Env().Null();
    return handle(info.Env(), g);
  });
  EXPORT(zeroGrad, {
    auto& g = tensorArg(info, 0).mutable_grad();
    if (g.defined()) { g = at::Tensor(); }
    return info.Env().Undefined();
  });
  EXPORT(backward, {
    auto& t = tensorArg(info, 0);
    auto g = optTensorArg(info, 1);
    t.backward(g);
    return info.Env().Undefined();
  });
  UNARY(detach, a.detach());
  UNARY(clone, a.clone());
  // Sum of the version counters of the given tensors: every in-place change through libtorch
  // (optimizer steps, copy_, fill_) raises it, so caches derived from them can tell they are stale.
  // Batch norm's running-statistics update in training mode does NOT raise it.
  EXPORT(versionSum, {
    double sum = 0;
    for (auto& t : tensorsArg(info, 0)) sum += static_cast<double>(t._version());
    return Napi::Number::New(info.Env(), sum);
  });

  // ---- in-place updates (never recorded by autograd) ------------------------------------------
  EXPORT(copyInto, {
    at::NoGradGuard ng;
    tensorArg(info, 0).copy_(tensorArg(info, 1));
    return info.Env().Undefined();
  });
  EXPORT(fillInto, {
    at::NoGradGuard ng;
    tensorArg(info, 0).fill_(numArg(info, 1));
    return info.Env().Undefined();
  });

  // ---- elementwise ----------------------------------------------------------------------------
  BINARY(add, a + b);
  BINARY(sub, a - b);
  BINARY(mul, a * b);
  BINARY(div, a / b);
  BINARY(eq, a.eq(b));
  BINARY(maximum, at::maximum(a, b));
  EXPORT(addScalar, { return handle(info.Env(), tensorArg(info, 0) + numArg(info, 1)); });
  EXPORT(mulScalar, { return handle(info.Env(), tensorArg(info, 0) * numArg(info, 1)); });
  EXPORT(powScalar, { return handle(info.Env(), tensorArg(info, 0).pow(numArg(info, 1))); });
  EXPORT(clamp, { return handle(info.Env(), tensorArg(info, 0).clamp(numArg(info, 1), numArg(info, 2))); });
  UNARY(neg, -a);
  UNARY(exp, a.exp());
  UNARY(log, a.log());
  UNARY(sqrt, a.sqrt());
  UNARY(abs, a.abs());
  UNARY(relu, at::relu(a));
  UNARY(relu6, at::hardtanh(a, 0.0, 6.0));
  // In place: valid only where autograd does not need the input (e.g. right after batch norm,
  // whose backward saves its input, not its output); autograd's version check catches misuse.
  EXPORT(relu6_, { at::hardtanh_(tensorArg(info, 0), 0.0, 6.0); return info.Env().Undefined(); });
  UNARY(hardswish, at::hardswish(a));
  UNARY(sigmoid, a.sigmoid());
  UNARY(tanh, a.tanh());
  EXPORT(toDtype, { return handle(info.Env(), tensorArg(info, 0).to(dtypeOf(strArg(info, 1)))); });

  // ---- reductions -----------------------------------------------------------------------------
  EXPORT(sum, {
    auto& a = tensorArg(info, 0);
    if (info[1].IsNull() || info[1].IsUndefined()) return handle(info.Env(), a.sum());
    return handle(info.Env(), a.sum(intsArg(info, 1), boolArg(info, 2)));
  });
  EXPORT(mean, {
    auto& a = tensorArg(info, 0);
    if (info[1].IsNull() || info[1].IsUndefined()) return handle(info.Env(), a.mean());
    return handle(info.Env(), a.mean(intsArg(info, 1), boolArg(info, 2)));
  });
  UNARY(max, a.max());
  EXPORT(argmax, { return handle(info.Env(), tensorArg(info, 0).argmax(intArg(info, 1), boolArg(info, 2))); });
  EXPORT(softmax, { return handle(info.Env(), tensorArg(info, 0).softmax(intArg(info, 1))); });
  EXPORT(logSoftmax, { return handle(info.Env(), tensorArg(info, 0).log_softmax(intArg(info, 1))); });
  EXPORT(oneHot, {
    return handle(info.Env(), at::one_hot(tensorArg(info, 0), intArg(info, 1)).to(at::kFloat));
  });

  // ---- shape ------------------------------------------------------------------------------------
  EXPORT(reshape, { return handle(info.Env(), tensorArg(info, 0).reshape(intsArg(info, 1))); });
  EXPORT(permute, { return handle(info.Env(), tensorArg(info, 0).permute(intsArg(info, 1))); });
  EXPORT(transpose, { return handle(info.Env(), tensorArg(info, 0).transpose(intArg(info, 1), intArg(info, 2))); });
  EXPORT(select, { return handle(info.Env(), tensorArg(info, 0).select(intArg(info, 1), intArg(info, 2))); });
  EXPORT(narrow, {
    return handle(info.Env(), tensorArg(info, 0).narrow(intArg(info, 1), intArg(info, 2), intArg(info, 3)));
  });
  EXPORT(indexSelect, {
    return handle(info.Env(), tensorArg(info, 0).index_select(intArg(info, 1), tensorArg(info, 2)));
  });
  EXPORT(unsqueeze, { return handle(info.Env(), tensorArg(info, 0).unsqueeze(intArg(info, 1))); });
  EXPORT(squeeze, { return handle(info.Env(), tensorArg(info, 0).squeeze(intArg(info, 1))); });
  EXPORT(expand, { return handle(info.Env(), tensorArg(info, 0).expand(intsArg(info, 1))); });
  EXPORT(stack, { return handle(info.Env(), torch::stack(tensorsArg(info, 0), intArg(info, 1))); });
  EXPORT(cat, { return handle(info.Env(), torch::cat(tensorsArg(info, 0), intArg(info, 1))); });
  EXPORT(contiguous, {
    const auto fmt = strArg(info, 1);
    if (fmt == "channels_last") return handle(info.Env(), tensorArg(info, 0).contiguous(at::MemoryFormat::ChannelsLast));
    if (fmt == "contiguous") return handle(info.Env(), tensorArg(info, 0).contiguous());
    throw std::invalid_argument("memory format must be 'contiguous' or 'channels_last'");
  });

  // ---- neural-network ops -----------------------------------------------------------------------
  EXPORT(matmul, { return handle(info.Env(), at::matmul(tensorArg(info, 0), tensorArg(info, 1))); });
  EXPORT(linear, {
    return handle(info.Env(), at::linear(tensorArg(info, 0), tensorArg(info, 1), optTensorArg(info, 2)));
  });
  EXPORT(conv2d, {
    return handle(info.Env(), at::conv2d(tensorArg(info, 0), tensorArg(info, 1), optTensorArg(info, 2),
                                         intsArg(info, 3), intsArg(info, 4), intsArg(info, 5), intArg(info, 6)));
  });
  EXPORT(batchNorm, {
    return handle(info.Env(), at::batch_norm(tensorArg(info, 0), optTensorArg(info, 1), optTensorArg(info, 2),
                                             optTensorArg(info, 3), optTensorArg(info, 4), boolArg(info, 5),
                                             numArg(info, 6), numArg(info, 7), /*cudnn_enabled=*/true));
  });
  // Training-mode batch norm fused with clamp(lo, hi) (see batch_norm_act.h); own backward.
  EXPORT(batchNormClamp, {
    return handle(info.Env(), compnet::batchNormClamp(tensorArg(info, 0), optTensorArg(info, 1), optTensorArg(info, 2), optTensorArg(info, 3),
                                                      optTensorArg(info, 4), numArg(info, 5), numArg(info, 6), numArg(info, 7), numArg(info, 8)));
  });
  // relu6(bn2(depthwise3x3(relu6(bn1(h1))))) in training mode as one op (see inverted_middle.h).
  EXPORT(invertedMiddle, {
    return handle(info.Env(), compnet::invertedMiddle(tensorArg(info, 0), tensorArg(info, 1), tensorArg(info, 2), tensorArg(info, 3), tensorArg(info, 4),
                                                      tensorArg(info, 5), tensorArg(info, 6), tensorArg(info, 7), tensorArg(info, 8), tensorArg(info, 9),
                                                      numArg(info, 10), numArg(info, 11)));
  });
  // An inverted-residual block, [x +] bn3(conv1x1(...(conv1x1(x, w1))..., w3)), in training mode as
  // one op (see inverted_branch.h), and whether it takes these tensors (it needs an AVX-512 CPU).
  EXPORT(invertedBranch, {
    return handle(info.Env(), compnet::invertedBranch(tensorArg(info, 0), tensorArg(info, 1), tensorArg(info, 2), tensorArg(info, 3), tensorArg(info, 4),
                                                      tensorArg(info, 5), tensorArg(info, 6), tensorArg(info, 7), tensorArg(info, 8), tensorArg(info, 9),
                                                      tensorArg(info, 10), tensorArg(info, 11), tensorArg(info, 12), tensorArg(info, 13), tensorArg(info, 14),
                                                      tensorArg(info, 15), boolArg(info, 16), numArg(info, 17), numArg(info, 18)));
  });
  EXPORT(invertedBranchApplies, {
    return Napi::Boolean::New(info.Env(),
                              compnet::invertedBranchApplies(tensorArg(info, 0), tensorArg(info, 1), tensorArg(info, 2), tensorArg(info, 3), boolArg(info, 4)));
  });
  EXPORT(crossEntropy, {
    return handle(info.Env(), at::cross_entropy_loss(tensorArg(info, 0), tensorArg(info, 1)));
  });

  // ---- frozen TorchScript plans (inference) -----------------------------------------------------
  // jitFreeze(source, names, tensors): a module whose attributes are copies of the given tensors
  // and whose methods are `source`; frozen and optimised for inference as torch.jit.freeze +
  // optimize_for_inference do (weights prepacked in oneDNN's layout, batch norm folded, in-place
  // activations). Callers must check its outputs: on libtorch 1.13.1 with oneDNN 2.6.3, the
  // frozen graph's clamp (prim::MKLDNNHardTanh_) is a no-op when a conv's output channels are not
  // a multiple of 16 (measured; BENCHMARKS.md).
  EXPORT(jitFreeze, {
    const auto source = strArg(info, 0);
    auto names = info[1].As<Napi::Array>();
    auto tensors = tensorsArg(info, 2);
    if (names.Length() != tensors.size()) throw std::invalid_argument("names and tensors differ in length");
    torch::jit::Module m("CompnetPlan");
    for (uint32_t k = 0; k < names.Length(); ++k)
      m.register_parameter(names.Get(k).As<Napi::String>().Utf8Value(), tensors[k].detach().clone(), /*is_buffer=*/false);
    m.define(source);
    m.eval();
    auto frozen = torch::jit::freeze(m);
    frozen = torch::jit::optimize_for_inference(frozen);
    const int64_t id = g_next_id++;
    g_modules.emplace(id, std::move(frozen));
    return Napi::Number::New(info.Env(), static_cast<double>(id));
  });
  EXPORT(jitForward, {
    const int64_t id = intArg(info, 0);
    auto it = g_modules.find(id);
    if (it == g_modules.end()) throw std::invalid_argument("module handle " + std::to_string(id) + " is not live");
    at::NoGradGuard ng;
    std::vector<c10::IValue> inputs;
    for (auto& t : tensorsArg(info, 1)) inputs.emplace_back(t);
    return handle(info.Env(), it->second.forward(inputs).toTensor());
  });
  // The optimised graph as text (diagnostics: which ops the plan runs).
  EXPORT(jitGraph, {
    auto it = g_modules.find(intArg(info, 0));
    if (it == g_modules.end()) throw std::invalid_argument("module handle is not live");
    return Napi::String::New(info.Env(), it->second.get_method("forward").graph()->toString());
  });
  EXPORT(jitFree, { g_modules.erase(intArg(info, 0)); return info.Env().Undefined(); });

  // ---- optimizers (libtorch's own) --------------------------------------------------------------
  EXPORT(adam, {
    auto groups = groupsArg(info, 0);
    auto opts = info[1].As<Napi::Object>();
    const double b1 = opts.Get("beta1").As<Napi::Number>().DoubleValue();
    const double b2 = opts.Get("beta2").As<Napi::Number>().DoubleValue();
    const double eps = opts.Get("eps").As<Napi::Number>().DoubleValue();
    const bool decoupled = opts.Get("decoupled").As<Napi::Boolean>().Value();
    std::vector<torch::optim::OptimizerParamGroup> pg;
    std::unique_ptr<torch::optim::Optimizer> opt;
    if (decoupled) {
      for (auto& g : groups)
        pg.emplace_back(g.params, std::make_unique<torch::optim::AdamWOptions>(
                                      torch::optim::AdamWOptions(g.lr).betas({b1, b2}).eps(eps).weight_decay(g.weightDecay)));
      opt = std::make_unique<torch::optim::AdamW>(pg, torch::optim::AdamWOptions(groups.empty() ? 1e-3 : groups[0].lr));
    } else {
      for (auto& g : groups)
        pg.emplace_back(g.params, std::make_unique<torch::optim::AdamOptions>(
                                      torch::optim::AdamOptions(g.lr).betas({b1, b2}).eps(eps).weight_decay(g.weightDecay)));
      opt = std::make_unique<torch::optim::Adam>(pg, torch::optim::AdamOptions(groups.empty() ? 1e-3 : groups[0].lr));
    }
    return Napi::Number::New(info.Env(), static_cast<double>(putOptimizer(std::move(opt))));
  });
  EXPORT(sgd, {
    auto groups = groupsArg(info, 0);
    auto opts = info[1].As<Napi::Object>();
    const double momentum = opts.Get("momentum").As<Napi::Number>().DoubleValue();
    const bool nesterov = opts.Get("nesterov").As<Napi::Boolean>().Value();
    std::vector<torch::optim::OptimizerParamGroup> pg;
    for (auto& g : groups)
      pg.emplace_back(g.params, std::make_unique<torch::optim::SGDOptions>(
                                    torch::optim::SGDOptions(g.lr).momentum(momentum).nesterov(nesterov).weight_decay(g.weightDecay)));
    auto opt = std::make_unique<torch::optim::SGD>(pg, torch::optim::SGDOptions(groups.empty() ? 1e-2 : groups[0].lr));
    return Napi::Number::New(info.Env(), static_cast<double>(putOptimizer(std::move(opt))));
  });
  EXPORT(optStep, { optimizerArg(info, 0).step(); return info.Env().Undefined(); });
  EXPORT(optZeroGrad, { optimizerArg(info, 0).zero_grad(); return info.Env().Undefined(); });
  EXPORT(optSetLr, { setGroupLr(optimizerArg(info, 0), intArg(info, 1), numArg(info, 2)); return info.Env().Undefined(); });
  EXPORT(optFree, { g_optimizers.erase(intArg(info, 0)); return info.Env().Undefined(); });
  EXPORT(optSave, {
    torch::serialize::OutputArchive archive;
    optimizerArg(info, 0).save(archive);
    std::ostringstream os;
    archive.save_to(os);
    const std::string s = os.str();
    return Napi::Buffer<char>::Copy(info.Env(), s.data(), s.size());
  });
  EXPORT(optLoad, {
    auto& opt = optimizerArg(info, 0);
    auto buf = info[1].As<Napi::Buffer<char>>();
    torch::serialize::InputArchive archive;
    archive.load_from(buf.Data(), buf.Length());
    opt.load(archive);
    return info.Env().Undefined();
  });
  return exports;
}

NODE_API_MODULE(compnet_torch, Init)
