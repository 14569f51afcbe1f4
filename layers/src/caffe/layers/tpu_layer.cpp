#include <cmath>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/tpu_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void TPULayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  const RecurrentParameter& rp = this->layer_param_.recurrent_param();
  CHECK_GT(rp.num_output(), 0) << "TPU layer '" << name
      << "': recurrent_param { num_output } must be set (the hidden size H)";
  CHECK(!rp.expose_hidden()) << "TPU layer '" << name
      << "': expose_hidden is not supported (each batch holds whole "
      << "sequences; the state starts at 0)";
  CHECK_GE(bottom[0]->num_axes(), 2) << "TPU layer '" << name
      << "': bottom[0] must have at least 2 axes -- (#timesteps, #streams, "
      << "...), got " << bottom[0]->shape_string();
  mode_ = this->layer_param_.tpu_param().mode();
  first_tp_ = this->layer_param_.tpu_param().first_tp();
  H_ = rp.num_output();
  D_ = bottom[0]->count(2);
  CHECK_GT(D_, 0) << "TPU layer '" << name << "': bottom[0] has no features";

  const int num_blobs = has_h_step() ? 7 : 5;
  if (this->blobs_.size() > 0) {
    CHECK_EQ(this->blobs_.size(), num_blobs) << "TPU layer '" << name
        << "': expected " << num_blobs << " parameter blobs in mode "
        << TPUParameter_Mode_Name(mode_) << ", got " << this->blobs_.size();
    LOG(INFO) << "Skipping parameter initialization";
  } else {
    this->blobs_.resize(num_blobs);
    vector<int> w_in(2), w_hh(2), bias(1, H_);
    w_in[0] = H_; w_in[1] = D_;
    w_hh[0] = H_; w_hh[1] = H_;
    const TPUParameter& tpp = this->layer_param_.tpu_param();
    // Each weight group takes its own tpu_param filler where one is set,
    // else recurrent_param's, as the RNN layer does for all of them.
    const FillerParameter& input_f = tpp.has_input_weight_filler() ?
        tpp.input_weight_filler() : rp.weight_filler();
    const FillerParameter& hidden_f = tpp.has_hidden_weight_filler() ?
        tpp.hidden_weight_filler() : rp.weight_filler();
    const FillerParameter& modulation_f =
        tpp.has_modulation_weight_filler() ?
        tpp.modulation_weight_filler() : rp.weight_filler();
    // W_I, b_I, W_H, W_O, b_O: the RNN layer's W_xh, b_h, W_hh, W_ho, b_o.
    const FillerParameter* fillers[7] = {&input_f, &rp.bias_filler(),
        &hidden_f, &hidden_f, &rp.bias_filler(), &modulation_f,
        &rp.bias_filler()};
    const bool is_weight[7] = {true, false, true, true, false, true, false};
    for (int i = 0; i < num_blobs; ++i) {
      const vector<int>& shape = !is_weight[i] ? bias : (i == 0 ? w_in : w_hh);
      this->blobs_[i].reset(new Blob<Dtype>(shape));
      shared_ptr<Filler<Dtype> > filler(GetFiller<Dtype>(*fillers[i]));
      filler->Fill(this->blobs_[i].get());
    }
  }
  CHECK_EQ(this->blobs_[0]->count(1), D_) << "TPU layer '" << name
      << "': W_I is " << this->blobs_[0]->shape_string()
      << " but bottom[0] has " << D_ << " features per row";
  this->param_propagate_down_.resize(this->blobs_.size(), true);
}

template <typename Dtype>
void TPULayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  CHECK_GE(bottom[0]->num_axes(), 2) << "TPU layer '" << name
      << "': bottom[0] must be (#timesteps, #streams, ...), got "
      << bottom[0]->shape_string();
  T_ = bottom[0]->shape(0);
  N_ = bottom[0]->shape(1);
  CHECK_EQ(bottom[0]->count(2), D_) << "TPU layer '" << name
      << "': the input size per row changed from D=" << D_ << " to D="
      << bottom[0]->count(2) << " (bottom[0] " << bottom[0]->shape_string()
      << "); W_I is H x D, so every batch must keep the same D";
  CHECK(bottom[1]->num_axes() == 2 && bottom[1]->shape(0) == T_ &&
        bottom[1]->shape(1) == N_) << "TPU layer '" << name
      << "': bottom[1] (cont) must be T x N = " << T_ << " x " << N_
      << " to match bottom[0] " << bottom[0]->shape_string() << ", got "
      << bottom[1]->shape_string();
  vector<int> shape(3);
  shape[0] = T_; shape[1] = N_; shape[2] = H_;
  top[0]->Reshape(shape);
  htilde_.Reshape(shape);
  scaled_.Reshape(shape);
  hidden_.Reshape(shape);
  tp_.Reshape(vector<int>(bottom[1]->shape()));
  vector<int> state_shape(2);
  state_shape[0] = N_; state_shape[1] = H_;
  grad_h_.Reshape(state_shape);
  bias_multiplier_.Reshape(vector<int>(1, T_ * N_));
  caffe_set(bias_multiplier_.count(), Dtype(1),
      bias_multiplier_.mutable_cpu_data());
}

// Spread of the frame difference, one value per (t, n); zero where there is
// no previous frame of the same sequence.
template <typename Dtype>
static void temporal_perception_cpu(int T, int N, int D, const Dtype* x,
    const Dtype* cont, Dtype* tp) {
  for (int t = 0; t < T; ++t) {
    for (int n = 0; n < N; ++n) {
      const int row = t * N + n;
      if (t == 0 || cont[row] == 0) { tp[row] = 0; continue; }
      const Dtype* cur = x + static_cast<size_t>(row) * D;
      const Dtype* prev = cur - static_cast<size_t>(N) * D;
      double sum = 0;
      for (int d = 0; d < D; ++d) sum += cur[d] - prev[d];
      const double mean = sum / D;
      double sq = 0;
      for (int d = 0; d < D; ++d) {
        const double dev = cur[d] - prev[d] - mean;
        sq += dev * dev;
      }
      tp[row] = static_cast<Dtype>(std::sqrt(sq / D));
    }
  }
}

// tp at the first frame of each sequence (t = 0 or cont_t = 0), where Eq. 7
// has no x_{t-1}: 0 (as computed above), 1, or the next frame's tp.
template <typename Dtype>
static void first_frame_tp_cpu(int T, int N, TPUParameter_FirstTP rule,
    const Dtype* cont, Dtype* tp) {
  if (rule == TPUParameter_FirstTP_ZERO) return;
  for (int t = 0; t < T; ++t) {
    for (int n = 0; n < N; ++n) {
      const int row = t * N + n;
      if (t > 0 && cont[row] != 0) continue;
      const bool has_next = t + 1 < T && cont[row + N] != 0;
      tp[row] = (rule == TPUParameter_FirstTP_NEXT && has_next) ?
          tp[row + N] : Dtype(1);
    }
  }
}

template <typename Dtype>
static void tanh_inplace_cpu(int count, Dtype* x) {
  for (int i = 0; i < count; ++i) x[i] = std::tanh(x[i]);
}

// out = dy * (1 - y^2): the gradient through y = tanh(a).
template <typename Dtype>
static void tanh_backward_cpu(int count, const Dtype* dy, const Dtype* y,
    Dtype* out) {
  for (int i = 0; i < count; ++i) out[i] = dy[i] * (1 - y[i] * y[i]);
}

// out[n, :] (+)= scale[n] * in[n, :]
template <typename Dtype>
static void scale_rows_cpu(int rows, int cols, const Dtype* scale,
    const Dtype* in, Dtype* out, bool accumulate) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const Dtype v = scale[r] * in[r * cols + c];
      out[r * cols + c] = accumulate ? out[r * cols + c] + v : v;
    }
  }
}

template <typename Dtype>
void TPULayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int TN = T_ * N_, NH = N_ * H_;
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* cont = bottom[1]->cpu_data();
  const Dtype* ones = bias_multiplier_.cpu_data();
  Dtype* tp = tp_.mutable_cpu_data();
  Dtype* htilde = htilde_.mutable_cpu_data();
  Dtype* hidden = hidden_.mutable_cpu_data();
  Dtype* gated = grad_h_.mutable_cpu_data();  // scratch: cont_t * h_{t-1}

  if (mode_ == TPUParameter_Mode_TPU) {
    temporal_perception_cpu(T_, N_, D_, x, cont, tp);
    first_frame_tp_cpu(T_, N_, first_tp_, cont, tp);
  } else {
    caffe_set(TN, Dtype(1), tp);
  }
  // The input term of every step at once, as RNN's W_xh_x: x W_I^T + b_I.
  caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, TN, H_, D_, Dtype(1), x,
      this->blobs_[0]->cpu_data(), Dtype(0), htilde);
  caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TN, H_, 1, Dtype(1), ones,
      this->blobs_[1]->cpu_data(), Dtype(1), htilde);
  for (int t = 0; t < T_; ++t) {
    Dtype* a_t = htilde + t * NH;
    if (t > 0) {
      scale_rows_cpu(N_, H_, cont + t * N_, hidden + (t - 1) * NH, gated,
          false);
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, N_, H_, H_, Dtype(1),
          gated, this->blobs_[2]->cpu_data(), Dtype(1), a_t);
    }
    tanh_inplace_cpu(NH, a_t);
    Dtype* h_t = hidden + t * NH;
    if (has_h_step()) {
      Dtype* s_t = scaled_.mutable_cpu_data() + t * NH;
      scale_rows_cpu(N_, H_, tp + t * N_, a_t, s_t, false);
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, N_, H_, H_, Dtype(1),
          s_t, this->blobs_[5]->cpu_data(), Dtype(0), h_t);
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, N_, H_, 1, Dtype(1),
          ones, this->blobs_[6]->cpu_data(), Dtype(1), h_t);
      tanh_inplace_cpu(NH, h_t);
    } else {
      caffe_copy(NH, a_t, h_t);
    }
  }
  Dtype* y = top[0]->mutable_cpu_data();
  caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, TN, H_, H_, Dtype(1), hidden,
      this->blobs_[3]->cpu_data(), Dtype(0), y);
  caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TN, H_, 1, Dtype(1), ones,
      this->blobs_[4]->cpu_data(), Dtype(1), y);
  tanh_inplace_cpu(TN * H_, y);
}

template <typename Dtype>
void TPULayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[1]) << "TPU layer '" << this->layer_param_.name()
      << "': cannot backpropagate to sequence indicators (cont)";
  const int TN = T_ * N_, NH = N_ * H_;
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* cont = bottom[1]->cpu_data();
  const Dtype* ones = bias_multiplier_.cpu_data();
  const Dtype* tp = tp_.cpu_data();
  const Dtype* htilde = htilde_.cpu_data();
  const Dtype* hidden = hidden_.cpu_data();
  const Dtype* scaled = scaled_.cpu_data();
  const Dtype* W_H = this->blobs_[2]->cpu_data();
  const Dtype* W_O = this->blobs_[3]->cpu_data();
  Dtype* d_out = htilde_.mutable_cpu_diff();  // first dL/d(W_O h + b_O) ...
  Dtype* d_hidden = hidden_.mutable_cpu_diff();
  Dtype* d_scaled = scaled_.mutable_cpu_diff();
  Dtype* d_prev = grad_h_.mutable_cpu_diff();

  tanh_backward_cpu(TN * H_, top[0]->cpu_diff(), top[0]->cpu_data(), d_out);
  if (this->param_propagate_down_[3]) {
    caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, H_, H_, TN, Dtype(1),
        d_out, hidden, Dtype(1), this->blobs_[3]->mutable_cpu_diff());
  }
  if (this->param_propagate_down_[4]) {
    caffe_cpu_gemv<Dtype>(CblasTrans, TN, H_, Dtype(1), d_out, ones, Dtype(1),
        this->blobs_[4]->mutable_cpu_diff());
  }
  caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TN, H_, H_, Dtype(1),
      d_out, W_O, Dtype(0), d_hidden);
  // ... then, step by step, d_out's storage holds dL/d(pre-activation of h~).
  Dtype* d_a = d_out;
  for (int t = T_ - 1; t >= 0; --t) {
    Dtype* dh_t = d_hidden + t * NH;
    Dtype* da_t = d_a + t * NH;
    if (has_h_step()) {
      tanh_backward_cpu(NH, dh_t, hidden + t * NH, dh_t);  // now dL/dm_t
      Dtype* ds_t = d_scaled + t * NH;
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, N_, H_, H_, Dtype(1),
          dh_t, this->blobs_[5]->cpu_data(), Dtype(0), ds_t);
      scale_rows_cpu(N_, H_, tp + t * N_, ds_t, ds_t, false);
      tanh_backward_cpu(NH, ds_t, htilde + t * NH, da_t);
    } else {
      tanh_backward_cpu(NH, dh_t, htilde + t * NH, da_t);
    }
    if (t > 0) {
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, N_, H_, H_, Dtype(1),
          da_t, W_H, Dtype(0), d_prev);
      scale_rows_cpu(N_, H_, cont + t * N_, d_prev, d_hidden + (t - 1) * NH,
          true);
    }
  }
  if (has_h_step() && this->param_propagate_down_[5]) {
    caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, H_, H_, TN, Dtype(1),
        d_hidden, scaled, Dtype(1), this->blobs_[5]->mutable_cpu_diff());
  }
  if (has_h_step() && this->param_propagate_down_[6]) {
    caffe_cpu_gemv<Dtype>(CblasTrans, TN, H_, Dtype(1), d_hidden, ones,
        Dtype(1), this->blobs_[6]->mutable_cpu_diff());
  }
  if (this->param_propagate_down_[2] && T_ > 1) {
    // The recurrent input of steps 1..T-1: cont_t * h_{t-1}.
    Dtype* gated = d_scaled;
    scale_rows_cpu((T_ - 1) * N_, H_, cont + N_, hidden, gated, false);
    caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, H_, H_, (T_ - 1) * N_,
        Dtype(1), d_a + NH, gated, Dtype(1),
        this->blobs_[2]->mutable_cpu_diff());
  }
  if (this->param_propagate_down_[0]) {
    caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, H_, D_, TN, Dtype(1),
        d_a, x, Dtype(1), this->blobs_[0]->mutable_cpu_diff());
  }
  if (this->param_propagate_down_[1]) {
    caffe_cpu_gemv<Dtype>(CblasTrans, TN, H_, Dtype(1), d_a, ones, Dtype(1),
        this->blobs_[1]->mutable_cpu_diff());
  }
  if (propagate_down[0]) {
    caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TN, D_, H_, Dtype(1),
        d_a, this->blobs_[0]->cpu_data(), Dtype(0),
        bottom[0]->mutable_cpu_diff());
  }
}

#ifdef CPU_ONLY
STUB_GPU(TPULayer);
#endif

INSTANTIATE_CLASS(TPULayer);
REGISTER_LAYER_CLASS(TPU);

}  // namespace caffe
