// Python binding of the bias_act CUDA launchers (bias_act.cu): tensors in, raw pointers out.
//
// Only torch/extension.h is included, never a CUDA or c10/cuda header, because torch's CPU wheel
// ships none and this file must also compile there (the tests build it on machines without a GPU).
// That is why the stream arrives from Python as an integer (torch.cuda.current_stream().cuda_stream)
// and the device is made current by the caller (cuda_impl.py), and why CUDA errors come back as
// integer codes that are turned into Python exceptions here.
//
// The kernels index every operand by one storage offset, so the checks below ask for what that
// needs: one dtype, CUDA memory, the same element count and a dense layout shared with the first
// operand, and a contiguous bias of C elements.
#include <torch/extension.h>

extern "C" int hifigan_bias_act_fwd(const void* x, const void* b, void* y, int64_t n, int64_t C, int64_t stride_c,
                                    int act, float alpha, float gain, float clamp, int dtype, int has_b,
                                    int has_clamp, void* stream);
extern "C" int hifigan_bias_act_bwd(const void* g, const void* x, const void* b, const void* y, void* out,
                                    int64_t n, int64_t C, int64_t stride_c, int act, float alpha, float gain,
                                    float clamp, int dtype, int from_z, int has_b, int has_clamp, void* stream);
extern "C" const char* hifigan_bias_act_error_string(int code);

namespace {

int dtype_code(const torch::Tensor& t) {
    switch (t.scalar_type()) {
        case torch::kFloat: return 0;
        case torch::kHalf: return 1;
        case torch::kBFloat16: return 2;
        default:
            TORCH_CHECK(false, "bias_act (cuda): unsupported dtype ", t.scalar_type(),
                        "; the CUDA kernels take float32, float16 or bfloat16");
    }
}

// `t` can be read or written at the same storage offsets as `ref`.
void check_like(const torch::Tensor& t, const char* name, const torch::Tensor& ref) {
    TORCH_CHECK(t.is_cuda(), "bias_act (cuda): ", name, " must be a CUDA tensor, got ", t.device());
    TORCH_CHECK(t.device() == ref.device(), "bias_act (cuda): ", name, " is on ", t.device(), ", expected ",
                ref.device());
    TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "bias_act (cuda): ", name, " has dtype ", t.scalar_type(),
                ", expected ", ref.scalar_type(), " (all operands share one dtype)");
    TORCH_CHECK(t.sizes() == ref.sizes(), "bias_act (cuda): ", name, " has shape ", t.sizes(), ", expected ",
                ref.sizes());
    TORCH_CHECK(t.is_non_overlapping_and_dense(), "bias_act (cuda): ", name,
                " must be dense (contiguous, channels-last or another permutation)");
    for (int64_t d = 0; d < t.dim(); ++d) {
        TORCH_CHECK(t.size(d) == 1 || t.stride(d) == ref.stride(d), "bias_act (cuda): ", name, " has strides ",
                    t.strides(), ", expected the layout of the first operand ", ref.strides());
    }
}

void check_bias(const torch::Tensor& b, const torch::Tensor& ref, int64_t C) {
    TORCH_CHECK(b.is_cuda() && b.device() == ref.device(), "bias_act (cuda): b must be on ", ref.device());
    TORCH_CHECK(b.scalar_type() == ref.scalar_type(), "bias_act (cuda): b has dtype ", b.scalar_type(),
                ", expected ", ref.scalar_type());
    TORCH_CHECK(b.is_contiguous() && b.numel() == C, "bias_act (cuda): b must be a contiguous tensor of C = ", C,
                " elements, got shape ", b.sizes());
}

void check_common(int64_t C, int64_t stride_c, int64_t act_code) {
    TORCH_CHECK(C >= 1 && stride_c >= 1, "bias_act (cuda): C and stride_c must be positive, got ", C, " and ",
                stride_c);
    TORCH_CHECK(act_code >= 0 && act_code <= 5, "bias_act (cuda): unknown activation code ", act_code);
}

void raise_on_error(int code, const char* what) {
    TORCH_CHECK(code == 0, "bias_act (cuda): ", what, " failed with CUDA error ", code, " (",
                hifigan_bias_act_error_string(code), ")");
}

void* as_stream(int64_t stream) { return reinterpret_cast<void*>(static_cast<intptr_t>(stream)); }

void fwd(const torch::Tensor& x, const torch::Tensor& b, const torch::Tensor& y, int64_t C, int64_t stride_c,
         int64_t act_code, double alpha, double gain, double clamp, bool has_b, bool has_clamp, int64_t stream) {
    check_common(C, stride_c, act_code);
    const int dtype = dtype_code(x);
    check_like(x, "x", x);
    check_like(y, "y", x);
    if (has_b) check_bias(b, x, C);
    const int err = hifigan_bias_act_fwd(x.data_ptr(), has_b ? b.data_ptr() : nullptr, y.data_ptr(), x.numel(), C,
                                         stride_c, (int)act_code, (float)alpha, (float)gain, (float)clamp, dtype,
                                         has_b, has_clamp, as_stream(stream));
    raise_on_error(err, "the forward kernel launch");
}

void bwd(const torch::Tensor& g, const torch::Tensor& x, const torch::Tensor& b, const torch::Tensor& y,
         const torch::Tensor& out, int64_t C, int64_t stride_c, int64_t act_code, double alpha, double gain,
         double clamp, bool from_z, bool has_b, bool has_clamp, int64_t stream) {
    check_common(C, stride_c, act_code);
    TORCH_CHECK(from_z || act_code <= 2, "bias_act (cuda): the backward of activation code ", act_code,
                " needs x (from_z=True)");
    const int dtype = dtype_code(g);
    check_like(g, "g", g);
    check_like(out, "out", g);
    if (from_z) check_like(x, "x", g);
    if (!from_z || has_clamp) check_like(y, "y", g);
    if (from_z && has_b) check_bias(b, g, C);
    const int err = hifigan_bias_act_bwd(g.data_ptr(), from_z ? x.data_ptr() : nullptr,
                                         from_z && has_b ? b.data_ptr() : nullptr,
                                         !from_z || has_clamp ? y.data_ptr() : nullptr, out.data_ptr(), g.numel(), C,
                                         stride_c, (int)act_code, (float)alpha, (float)gain, (float)clamp, dtype,
                                         from_z, has_b, has_clamp, as_stream(stream));
    raise_on_error(err, "the backward kernel launch");
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "hifigan bias_act CUDA kernels (see kernels/bias_act/cuda/bias_act.cu)";
    m.def("fwd", &fwd, "y = clamp(act(x + b) * gain); every operand in one dense layout", py::arg("x"),
          py::arg("b"), py::arg("y"), py::arg("C"), py::arg("stride_c"), py::arg("act_code"), py::arg("alpha"),
          py::arg("gain"), py::arg("clamp"), py::arg("has_b"), py::arg("has_clamp"), py::arg("stream_int"));
    m.def("bwd", &bwd, "out = g * gain * act'(z) * [|y| < clamp]", py::arg("g"), py::arg("x"), py::arg("b"),
          py::arg("y"), py::arg("out"), py::arg("C"), py::arg("stride_c"), py::arg("act_code"), py::arg("alpha"),
          py::arg("gain"), py::arg("clamp"), py::arg("from_z"), py::arg("has_b"), py::arg("has_clamp"),
          py::arg("stream_int"));
}
