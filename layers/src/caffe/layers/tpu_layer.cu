#include <vector>

#include "caffe/layers/tpu_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One block per (t, n) row: two reductions over D (mean, then squared
// deviation), in double so that large D (37632) keeps float precision.
template <typename Dtype>
__global__ void TPUTemporalPerception(const int N, const int D,
    const Dtype* x, const Dtype* cont, Dtype* tp) {
  __shared__ double buffer[CAFFE_CUDA_NUM_THREADS];
  const int row = blockIdx.x;
  const int t = row / N;
  if (t == 0 || cont[row] == 0) {
    if (threadIdx.x == 0) tp[row] = 0;
    return;
  }
  const Dtype* cur = x + static_cast<size_t>(row) * D;
  const Dtype* prev = cur - static_cast<size_t>(N) * D;
  double sum = 0;
  for (int d = threadIdx.x; d < D; d += blockDim.x) sum += cur[d] - prev[d];
  buffer[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buffer[threadIdx.x] += buffer[threadIdx.x + s];
    __syncthreads();
  }
  const double mean = buffer[0] / D;
  __syncthreads();
  double sq = 0;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    const double dev = cur[d] - prev[d] - mean;
    sq += dev * dev;
  }
  buffer[threadIdx.x] = sq;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buffer[threadIdx.x] += buffer[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) tp[row] = static_cast<Dtype>(sqrt(buffer[0] / D));
}

// tp at each sequence's first frame (see first_frame_tp_cpu): one thread a
// row, after TPUTemporalPerception has written every row's tp.
template <typename Dtype>
__global__ void TPUFirstFrameTP(const int T, const int N, const bool next,
    const Dtype* cont, Dtype* tp) {
  CUDA_KERNEL_LOOP(row, T * N) {
    const int t = row / N;
    if (t > 0 && cont[row] != 0) continue;
    const bool has_next = t + 1 < T && cont[row + N] != 0;
    tp[row] = (next && has_next) ? tp[row + N] : Dtype(1);
  }
}

template <typename Dtype>
__global__ void TPUTanh(const int count, Dtype* x) {
  CUDA_KERNEL_LOOP(i, count) { x[i] = tanh(x[i]); }
}

template <typename Dtype>
__global__ void TPUTanhBackward(const int count, const Dtype* dy,
    const Dtype* y, Dtype* out) {
  CUDA_KERNEL_LOOP(i, count) { out[i] = dy[i] * (1 - y[i] * y[i]); }
}

template <typename Dtype>
__global__ void TPUScaleRows(const int count, const int cols,
    const Dtype* scale, const Dtype* in, Dtype* out, const bool accumulate) {
  CUDA_KERNEL_LOOP(i, count) {
    const Dtype v = scale[i / cols] * in[i];
    out[i] = accumulate ? out[i] + v : v;
  }
}

template <typename Dtype>
static void scale_rows_gpu(int rows, int cols, const Dtype* scale,
    const Dtype* in, Dtype* out, bool accumulate) {
  const int count = rows * cols;
  // NOLINT_NEXT_LINE(whitespace/operators)
  TPUScaleRows<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, cols, scale, in, out, accumulate);
}

template <typename Dtype>
static void tanh_inplace_gpu(int count, Dtype* x) {
  // NOLINT_NEXT_LINE(whitespace/operators)
  TPUTanh<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, x);
}

template <typename Dtype>
static void tanh_backward_gpu(int count, const Dtype* dy, const Dtype* y,
    Dtype* out) {
  // NOLINT_NEXT_LINE(whitespace/operators)
  TPUTanhBackward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, dy, y, out);
}

template <typename Dtype>
void TPULayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int TN = T_ * N_, NH = N_ * H_;
  const Dtype* x = bottom[0]->gpu_data();
  const Dtype* cont = bottom[1]->gpu_data();
  const Dtype* ones = bias_multiplier_.gpu_data();
  Dtype* tp = tp_.mutable_gpu_data();
  Dtype* htilde = htilde_.mutable_gpu_data();
  Dtype* hidden = hidden_.mutable_gpu_data();
  Dtype* gated = grad_h_.mutable_gpu_data();

  if (mode_ == TPUParameter_Mode_TPU) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    TPUTemporalPerception<Dtype><<<TN, CAFFE_CUDA_NUM_THREADS>>>(
        N_, D_, x, cont, tp);
    CUDA_POST_KERNEL_CHECK;
    if (first_tp_ != TPUParameter_FirstTP_ZERO) {
      // NOLINT_NEXT_LINE(whitespace/operators)
      TPUFirstFrameTP<Dtype><<<CAFFE_GET_BLOCKS(TN), CAFFE_CUDA_NUM_THREADS>>>(
          T_, N_, first_tp_ == TPUParameter_FirstTP_NEXT, cont, tp);
      CUDA_POST_KERNEL_CHECK;
    }
  } else {
    caffe_gpu_set(TN, Dtype(1), tp);
  }
  caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, TN, H_, D_, Dtype(1), x,
      this->blobs_[0]->gpu_data(), Dtype(0), htilde);
  caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TN, H_, 1, Dtype(1), ones,
      this->blobs_[1]->gpu_data(), Dtype(1), htilde);
  for (int t = 0; t < T_; ++t) {
    Dtype* a_t = htilde + t * NH;
    if (t > 0) {
      scale_rows_gpu(N_, H_, cont + t * N_, hidden + (t - 1) * NH, gated,
          false);
      caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, N_, H_, H_, Dtype(1),
          gated, this->blobs_[2]->gpu_data(), Dtype(1), a_t);
    }
    tanh_inplace_gpu(NH, a_t);
    Dtype* h_t = hidden + t * NH;
    if (has_h_step()) {
      Dtype* s_t = scaled_.mutable_gpu_data() + t * NH;
      scale_rows_gpu(N_, H_, tp + t * N_, a_t, s_t, false);
      caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, N_, H_, H_, Dtype(1),
          s_t, this->blobs_[5]->gpu_data(), Dtype(0), h_t);
      caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, N_, H_, 1, Dtype(1),
          ones, this->blobs_[6]->gpu_data(), Dtype(1), h_t);
      tanh_inplace_gpu(NH, h_t);
    } else {
      caffe_copy(NH, a_t, h_t);
    }
  }
  Dtype* y = top[0]->mutable_gpu_data();
  caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, TN, H_, H_, Dtype(1), hidden,
      this->blobs_[3]->gpu_data(), Dtype(0), y);
  caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TN, H_, 1, Dtype(1), ones,
      this->blobs_[4]->gpu_data(), Dtype(1), y);
  tanh_inplace_gpu(TN * H_, y);
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void TPULayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[1]) << "TPU layer '" << this->layer_param_.name()
      << "': cannot backpropagate to sequence indicators (cont)";
  const int TN = T_ * N_, NH = N_ * H_;
  const Dtype* x = bottom[0]->gpu_data();
  const Dtype* cont = bottom[1]->gpu_data();
  const Dtype* ones = bias_multiplier_.gpu_data();
  const Dtype* tp = tp_.gpu_data();
  const Dtype* htilde = htilde_.gpu_data();
  const Dtype* hidden = hidden_.gpu_data();
  const Dtype* scaled = scaled_.gpu_data();
  const Dtype* W_H = this->blobs_[2]->gpu_data();
  const Dtype* W_O = this->blobs_[3]->gpu_data();
  Dtype* d_out = htilde_.mutable_gpu_diff();
  Dtype* d_hidden = hidden_.mutable_gpu_diff();
  Dtype* d_scaled = scaled_.mutable_gpu_diff();
  Dtype* d_prev = grad_h_.mutable_gpu_diff();

  tanh_backward_gpu(TN * H_, top[0]->gpu_diff(), top[0]->gpu_data(), d_out);
  if (this->param_propagate_down_[3]) {
    caffe_gpu_gemm<Dtype>(CblasTrans, CblasNoTrans, H_, H_, TN, Dtype(1),
        d_out, hidden, Dtype(1), this->blobs_[3]->mutable_gpu_diff());
  }
  if (this->param_propagate_down_[4]) {
    caffe_gpu_gemv<Dtype>(CblasTrans, TN, H_, Dtype(1), d_out, ones, Dtype(1),
        this->blobs_[4]->mutable_gpu_diff());
  }
  caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TN, H_, H_, Dtype(1),
      d_out, W_O, Dtype(0), d_hidden);
  Dtype* d_a = d_out;
  for (int t = T_ - 1; t >= 0; --t) {
    Dtype* dh_t = d_hidden + t * NH;
    Dtype* da_t = d_a + t * NH;
    if (has_h_step()) {
      tanh_backward_gpu(NH, dh_t, hidden + t * NH, dh_t);
      Dtype* ds_t = d_scaled + t * NH;
      caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, N_, H_, H_, Dtype(1),
          dh_t, this->blobs_[5]->gpu_data(), Dtype(0), ds_t);
      scale_rows_gpu(N_, H_, tp + t * N_, ds_t, ds_t, false);
      tanh_backward_gpu(NH, ds_t, htilde + t * NH, da_t);
    } else {
      tanh_backward_gpu(NH, dh_t, htilde + t * NH, da_t);
    }
    if (t > 0) {
      caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, N_, H_, H_, Dtype(1),
          da_t, W_H, Dtype(0), d_prev);
      scale_rows_gpu(N_, H_, cont + t * N_, d_prev, d_hidden + (t - 1) * NH,
          true);
    }
  }
  if (has_h_step() && this->param_propagate_down_[5]) {
    caffe_gpu_gemm<Dtype>(CblasTrans, CblasNoTrans, H_, H_, TN, Dtype(1),
        d_hidden, scaled, Dtype(1), this->blobs_[5]->mutable_gpu_diff());
  }
  if (has_h_step() && this->param_propagate_down_[6]) {
    caffe_gpu_gemv<Dtype>(CblasTrans, TN, H_, Dtype(1), d_hidden, ones,
        Dtype(1), this->blobs_[6]->mutable_gpu_diff());
  }
  if (this->param_propagate_down_[2] && T_ > 1) {
    Dtype* gated = d_scaled;
    scale_rows_gpu((T_ - 1) * N_, H_, cont + N_, hidden, gated, false);
    caffe_gpu_gemm<Dtype>(CblasTrans, CblasNoTrans, H_, H_, (T_ - 1) * N_,
        Dtype(1), d_a + NH, gated, Dtype(1),
        this->blobs_[2]->mutable_gpu_diff());
  }
  if (this->param_propagate_down_[0]) {
    caffe_gpu_gemm<Dtype>(CblasTrans, CblasNoTrans, H_, D_, TN, Dtype(1),
        d_a, x, Dtype(1), this->blobs_[0]->mutable_gpu_diff());
  }
  if (this->param_propagate_down_[1]) {
    caffe_gpu_gemv<Dtype>(CblasTrans, TN, H_, Dtype(1), d_a, ones, Dtype(1),
        this->blobs_[1]->mutable_gpu_diff());
  }
  if (propagate_down[0]) {
    caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TN, D_, H_, Dtype(1),
        d_a, this->blobs_[0]->gpu_data(), Dtype(0),
        bottom[0]->mutable_gpu_diff());
  }
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(TPULayer);

}  // namespace caffe
