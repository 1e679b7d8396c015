// bias_act in plain CUDA: the same two elementwise passes as triton_impl.py (see fused.py).
//
//   forward   y   = clamp(act(x + b[c]) * gain, -clamp, clamp)
//   backward  out = g * gain * act'(z) * [|y| < clamp]   (clamp rounded to the storage type)
//
// with c = (offset / stride_c) % C for the storage offset of each element, which names the channel
// in any dense layout (contiguous, channels-last, ...), so every operand is addressed by the same
// offset. act'(z) comes either from z = x + b (FROM_Z; every activation) or, for the
// piecewise-linear ones with gain > 0, from the sign of y alone: y > 0 <=> z > 0.
//
// Arithmetic is fp32 whatever the storage type (float, __half, __nv_bfloat16); a value is rounded
// once, on store. Conversions are the explicit intrinsics because torch builds .cu files with
// __CUDA_NO_HALF_CONVERSIONS__ and friends. Built without --use_fast_math: expf / tanhf / the
// division stay IEEE-accurate, so fp32 results match the PyTorch reference to a few ulp.
//
// Layout of the work: a grid-stride loop over 64-bit offsets. When every streamed pointer is
// 16-byte aligned, each step moves one 16-byte vector per operand (4 floats or 8 halves) and
// walks the channel index within it by increments (one division per vector, not per element);
// the remaining n % VEC elements, or everything when a pointer is misaligned (a sliced view),
// go through the scalar loop. The loop bodies are __host__ __device__ so that a host build
// (g++ -x c++ -include math.h -DHIFIGAN_BIAS_ACT_HOST_EMULATION) can run them thread by thread on
// the CPU in the tests; kernels and launchers exist only under nvcc (__CUDACC__).
//
// Only the CUDA runtime and the fp16 / bf16 headers are included: no torch headers, so this file
// compiles standalone with nvcc; binding.cpp reaches it through the extern "C" launchers below.
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

#define HD __host__ __device__ __forceinline__

namespace {

enum { LINEAR = 0, RELU = 1, LRELU = 2, TANH = 3, SIGMOID = 4, SILU = 5, NUM_ACTS = 6 };
constexpr int kThreads = 256;
constexpr int kBlocksPerSM = 8;  // 2048 resident threads per SM on sm_80 / sm_90

HD float to_f32(float v) { return v; }
HD float to_f32(__half v) { return __half2float(v); }
HD float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> HD T from_f32(float v);
template <> HD float from_f32<float>(float v) { return v; }
template <> HD __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> HD __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

HD float sigmoid_f(float z) { return 1.0f / (1.0f + expf(-z)); }

template <int ACT> HD float act_f(float z, float alpha) {
    if (ACT == RELU) return z < 0.0f ? 0.0f : z;  // written so that NaN passes through, as in torch.relu
    if (ACT == LRELU) return z > 0.0f ? z : z * alpha;
    if (ACT == TANH) return tanhf(z);
    if (ACT == SIGMOID) return sigmoid_f(z);
    if (ACT == SILU) return z * sigmoid_f(z);
    return z;
}

// act'(z); at z = 0 the piecewise-linear slopes take the left branch, as torch's relu / leaky_relu do.
template <int ACT> HD float slope_z(float z, float alpha) {
    if (ACT == RELU) return z > 0.0f ? 1.0f : 0.0f;
    if (ACT == LRELU) return z > 0.0f ? 1.0f : alpha;
    if (ACT == TANH) { float t = tanhf(z); return 1.0f - t * t; }
    if (ACT == SIGMOID) { float s = sigmoid_f(z); return s * (1.0f - s); }
    if (ACT == SILU) { float s = sigmoid_f(z); return s * (1.0f + z * (1.0f - s)); }
    return 1.0f;
}

// act'(z) from y = act(z) * gain with gain > 0 (only called for linear / relu / lrelu).
template <int ACT> HD float slope_y(float y, float alpha) {
    if (ACT == RELU) return y > 0.0f ? 1.0f : 0.0f;
    if (ACT == LRELU) return y > 0.0f ? 1.0f : alpha;
    return 1.0f;
}

// The channel of consecutive storage offsets: one division at `off`, then increments.
struct Channel {
    int64_t c, r, stride, C;
    HD Channel(int64_t off, int64_t stride_c, int64_t C_) : stride(stride_c), C(C_) {
        const int64_t q = off / stride_c;
        r = off - q * stride_c;
        c = q % C_;
    }
    HD void next() {
        if (++r == stride) { r = 0; if (++c == C) c = 0; }
    }
};

// 16-byte vector copies between memory and a local T[16 / sizeof(T)] (ld.global.v4 / st.global.v4
// on the device); the caller checks alignment. The local side goes through memcpy, not a uint4
// pointer cast: writing a float array through a uint4 lvalue and reading it back as float breaks
// strict aliasing, and g++ -O2 (the host build) really does reorder it. memcpy of a register-sized
// value compiles to plain moves.
template <typename T> HD void load16(T* local, const T* src) {
    const uint4 raw = *reinterpret_cast<const uint4*>(src);
    __builtin_memcpy(static_cast<void*>(local), &raw, sizeof(raw));
}
template <typename T> HD void store16(T* dst, const T* local) {
    uint4 raw;
    __builtin_memcpy(&raw, local, sizeof(raw));
    *reinterpret_cast<uint4*>(dst) = raw;
}

struct Params {  // what the activation math needs, shared by both passes
    int64_t n, C, stride_c;
    float alpha, gain, clamp;
    bool has_b, has_clamp, vec;
};

template <typename T> struct FwdArgs { using type = T; const T* x; const T* b; T* y; Params p; };
template <typename T> struct BwdArgs { using type = T; const T* g; const T* x; const T* b; const T* y; T* out; Params p; bool from_z; };

template <int ACT> HD float fwd_value(float z, const Params& p) {
    float y = act_f<ACT>(z, p.alpha) * p.gain;
    if (p.has_clamp) y = y < -p.clamp ? -p.clamp : (y > p.clamp ? p.clamp : y);  // NaN passes, as torch.clamp
    return y;
}

template <int ACT> HD float bwd_value(float g, float z, float y, bool from_z, const Params& p) {
    float d = (from_z ? slope_z<ACT>(z, p.alpha) : slope_y<ACT>(y, p.alpha)) * p.gain;
    if (p.has_clamp && !(fabsf(y) < p.clamp)) d = 0.0f;  // clamped (or NaN) outputs pass no gradient
    return g * d;
}

template <typename T, int ACT> HD void fwd_body(const FwdArgs<T>& a, int64_t tid, int64_t step) {
    constexpr int VEC = 16 / sizeof(T);
    const Params& p = a.p;
    int64_t done = 0;
    if (p.vec) {
        const int64_t nv = p.n / VEC;
        for (int64_t v = tid; v < nv; v += step) {
            const int64_t off = v * VEC;
            alignas(16) T xs[VEC], ys[VEC];
            load16(xs, a.x + off);
            Channel ch(p.has_b ? off : 0, p.has_b ? p.stride_c : 1, p.has_b ? p.C : 1);
#pragma unroll
            for (int k = 0; k < VEC; ++k) {
                float z = to_f32(xs[k]);
                if (p.has_b) { z += to_f32(a.b[ch.c]); ch.next(); }
                ys[k] = from_f32<T>(fwd_value<ACT>(z, p));
            }
            store16(a.y + off, ys);
        }
        done = nv * VEC;
    }
    for (int64_t i = done + tid; i < p.n; i += step) {
        float z = to_f32(a.x[i]);
        if (p.has_b) z += to_f32(a.b[(i / p.stride_c) % p.C]);
        a.y[i] = from_f32<T>(fwd_value<ACT>(z, p));
    }
}

template <typename T, int ACT> HD void bwd_body(const BwdArgs<T>& a, int64_t tid, int64_t step) {
    constexpr int VEC = 16 / sizeof(T);
    // The mask compares the stored y with the clamp as stored: a clamped output is the clamp rounded
    // to T (0.8 is 0.7998 in fp16), which would pass |y| < 0.8 and leak gradient through the clamp.
    Params p = a.p;
    p.clamp = to_f32(from_f32<T>(p.clamp));
    const bool from_z = ACT >= TANH || a.from_z;  // the smooth activations always need z
    const bool need_y = !from_z || p.has_clamp;
    const bool need_b = from_z && p.has_b;
    int64_t done = 0;
    if (p.vec) {
        const int64_t nv = p.n / VEC;
        for (int64_t v = tid; v < nv; v += step) {
            const int64_t off = v * VEC;
            alignas(16) T gs[VEC], xs[VEC], ys[VEC], os[VEC];
            load16(gs, a.g + off);
            if (from_z) load16(xs, a.x + off);
            if (need_y) load16(ys, a.y + off);
            Channel ch(need_b ? off : 0, need_b ? p.stride_c : 1, need_b ? p.C : 1);
#pragma unroll
            for (int k = 0; k < VEC; ++k) {
                float z = 0.0f;
                if (from_z) z = to_f32(xs[k]);
                if (need_b) { z += to_f32(a.b[ch.c]); ch.next(); }
                const float y = need_y ? to_f32(ys[k]) : 0.0f;
                os[k] = from_f32<T>(bwd_value<ACT>(to_f32(gs[k]), z, y, from_z, p));
            }
            store16(a.out + off, os);
        }
        done = nv * VEC;
    }
    for (int64_t i = done + tid; i < p.n; i += step) {
        float z = 0.0f;
        if (from_z) z = to_f32(a.x[i]);
        if (need_b) z += to_f32(a.b[(i / p.stride_c) % p.C]);
        const float y = need_y ? to_f32(a.y[i]) : 0.0f;
        a.out[i] = from_f32<T>(bwd_value<ACT>(to_f32(a.g[i]), z, y, from_z, p));
    }
}

#ifdef __CUDACC__  // the kernels and their launchers; a host-only build (tests) has only the loop bodies
template <typename T, int ACT> __global__ void __launch_bounds__(kThreads) fwd_kernel(FwdArgs<T> a) {
    fwd_body<T, ACT>(a, blockIdx.x * (int64_t)blockDim.x + threadIdx.x, (int64_t)gridDim.x * blockDim.x);
}

template <typename T, int ACT> __global__ void __launch_bounds__(kThreads) bwd_kernel(BwdArgs<T> a) {
    bwd_body<T, ACT>(a, blockIdx.x * (int64_t)blockDim.x + threadIdx.x, (int64_t)gridDim.x * blockDim.x);
}
#endif

// -- host side: validate, pick the template instance, launch --------------------------------------

template <typename T> struct TypeTag { using type = T; };
template <int A> struct ActTag { static constexpr int value = A; };

template <class F> int with_dtype(int dtype, F f) {  // dtype codes: 0 float32, 1 float16, 2 bfloat16
    switch (dtype) {
        case 0: return f(TypeTag<float>());
        case 1: return f(TypeTag<__half>());
        case 2: return f(TypeTag<__nv_bfloat16>());
        default: return cudaErrorInvalidValue;
    }
}

template <class F> int with_act(int act, F f) {
    switch (act) {
        case LINEAR: return f(ActTag<LINEAR>());
        case RELU: return f(ActTag<RELU>());
        case LRELU: return f(ActTag<LRELU>());
        case TANH: return f(ActTag<TANH>());
        case SIGMOID: return f(ActTag<SIGMOID>());
        case SILU: return f(ActTag<SILU>());
        default: return cudaErrorInvalidValue;
    }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

bool valid(int64_t n, int64_t C, int64_t stride_c, int act, int has_b) {
    return n >= 0 && act >= 0 && act < NUM_ACTS && (!has_b || (C >= 1 && stride_c >= 1));
}

#ifdef __CUDACC__
// Enough blocks to fill the device, never more than the work needs (one item = one vector when
// vectorized); the grid-stride loops cover the rest.
cudaError_t grid_for(const Params& p, int elem_size, int* blocks) {
    int dev = 0, sms = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e != cudaSuccess) return e;
    const int64_t need = ((p.vec ? p.n / (16 / elem_size) : p.n) + kThreads - 1) / kThreads;
    const int64_t cap = (int64_t)sms * kBlocksPerSM;
    *blocks = (int)(need < cap ? (need > 0 ? need : 1) : cap);
    return cudaSuccess;
}
#endif

// Both passes run through these two with a `run(args, act_tag)` that launches or (host test) loops.
template <class Run> int fwd_call(const void* x, const void* b, void* y, int64_t n, int64_t C, int64_t stride_c,
                                  int act, float alpha, float gain, float clamp, int dtype, int has_b,
                                  int has_clamp, Run run) {
    if (!valid(n, C, stride_c, act, has_b)) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    const Params p{n, C, stride_c, alpha, gain, clamp, has_b != 0, has_clamp != 0, aligned16(x) && aligned16(y)};
    return with_dtype(dtype, [&](auto tt) {
        using T = typename decltype(tt)::type;
        const FwdArgs<T> a{static_cast<const T*>(x), static_cast<const T*>(b), static_cast<T*>(y), p};
        return with_act(act, [&](auto at) { return run(a, at); });
    });
}

template <class Run> int bwd_call(const void* g, const void* x, const void* b, const void* y, void* out, int64_t n,
                                  int64_t C, int64_t stride_c, int act, float alpha, float gain, float clamp,
                                  int dtype, int from_z, int has_b, int has_clamp, Run run) {
    if (!valid(n, C, stride_c, act, has_b) || (act >= TANH && !from_z)) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    const bool vec = aligned16(g) && aligned16(out) && (!from_z || aligned16(x)) &&
                     ((from_z && !has_clamp) || aligned16(y));
    const Params p{n, C, stride_c, alpha, gain, clamp, has_b != 0, has_clamp != 0, vec};
    return with_dtype(dtype, [&](auto tt) {
        using T = typename decltype(tt)::type;
        const BwdArgs<T> a{static_cast<const T*>(g), static_cast<const T*>(x), static_cast<const T*>(b),
                           static_cast<const T*>(y), static_cast<T*>(out), p, from_z != 0};
        return with_act(act, [&](auto at) { return run(a, at); });
    });
}

}  // namespace

#ifdef __CUDACC__
extern "C" int hifigan_bias_act_fwd(const void* x, const void* b, void* y, int64_t n, int64_t C, int64_t stride_c,
                                    int act, float alpha, float gain, float clamp, int dtype, int has_b,
                                    int has_clamp, void* stream) {
    return fwd_call(x, b, y, n, C, stride_c, act, alpha, gain, clamp, dtype, has_b, has_clamp, [&](auto a, auto at) {
        using T = typename decltype(a)::type;
        int blocks = 0;
        const cudaError_t e = grid_for(a.p, sizeof(T), &blocks);
        if (e != cudaSuccess) return (int)e;
        fwd_kernel<T, decltype(at)::value><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
        return (int)cudaGetLastError();
    });
}

extern "C" int hifigan_bias_act_bwd(const void* g, const void* x, const void* b, const void* y, void* out,
                                    int64_t n, int64_t C, int64_t stride_c, int act, float alpha, float gain,
                                    float clamp, int dtype, int from_z, int has_b, int has_clamp, void* stream) {
    return bwd_call(g, x, b, y, out, n, C, stride_c, act, alpha, gain, clamp, dtype, from_z, has_b, has_clamp,
                    [&](auto a, auto at) {
        using T = typename decltype(a)::type;
        int blocks = 0;
        const cudaError_t e = grid_for(a.p, sizeof(T), &blocks);
        if (e != cudaSuccess) return (int)e;
        bwd_kernel<T, decltype(at)::value><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
        return (int)cudaGetLastError();
    });
}

extern "C" const char* hifigan_bias_act_error_string(int code) {
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}
#endif  // __CUDACC__

#ifdef HIFIGAN_BIAS_ACT_HOST_EMULATION
// The same validation, dispatch and loop bodies run on the CPU, one emulated thread after another
// over `threads` grid-stride lanes, for tests on machines without a GPU. Not part of the extension.
extern "C" int hifigan_bias_act_fwd_host(const void* x, const void* b, void* y, int64_t n, int64_t C,
                                         int64_t stride_c, int act, float alpha, float gain, float clamp, int dtype,
                                         int has_b, int has_clamp, int vec, int64_t threads) {
    return fwd_call(x, b, y, n, C, stride_c, act, alpha, gain, clamp, dtype, has_b, has_clamp, [&](auto a, auto at) {
        a.p.vec = a.p.vec && vec;
        for (int64_t t = 0; t < threads; ++t) fwd_body<typename decltype(a)::type, decltype(at)::value>(a, t, threads);
        return 0;
    });
}

extern "C" int hifigan_bias_act_bwd_host(const void* g, const void* x, const void* b, const void* y, void* out,
                                         int64_t n, int64_t C, int64_t stride_c, int act, float alpha, float gain,
                                         float clamp, int dtype, int from_z, int has_b, int has_clamp, int vec,
                                         int64_t threads) {
    return bwd_call(g, x, b, y, out, n, C, stride_c, act, alpha, gain, clamp, dtype, from_z, has_b, has_clamp,
                    [&](auto a, auto at) {
        a.p.vec = a.p.vec && vec;
        for (int64_t t = 0; t < threads; ++t) bwd_body<typename decltype(a)::type, decltype(at)::value>(a, t, threads);
        return 0;
    });
}
#endif
