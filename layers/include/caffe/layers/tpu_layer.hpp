#ifndef CAFFE_TPU_LAYER_HPP_
#define CAFFE_TPU_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief The Temporal Perception Unit of PSN (Li et al., Neurocomputing 2025,
 *        Eq. 4 and 7-9): an RNN whose hidden state is re-weighted at each step
 *        by the temporal perception tp_t, the spread of the frame difference.
 *
 * Bottoms and tops follow Caffe's RecurrentLayer, so that a net changes from
 * type: "RNN" to type: "TPU" with no other edit:
 *   bottom[0] x    @f$ (T \times N \times ...) @f$, flattened to D = count(2)
 *   bottom[1] cont @f$ (T \times N) @f$, 0 at the first frame of a sequence
 *   top[0]    y    @f$ (T \times N \times H) @f$, H = recurrent_param.num_output
 *
 * Per step t (rows n of the batch are independent):
 *   tp_t  = population std over D of (x_t - x_{t-1}); at a first frame
 *           (t = 0 or cont_t = 0: no predecessor) tpu_param.first_tp decides:
 *           ZERO (x_{t-1} := x_t, tp = 0), ONE (tp = 1) or NEXT (tp_{t+1})
 *   h~_t  = tanh(W_I x_t + b_I + W_H (cont_t h_{t-1})),   h_{-1} = 0
 *   h_t   = tanh(W_m (tp_t h~_t) + b_m)     (mode TPU; TP1 uses tp_t = 1;
 *                                           RNN skips this step: h_t = h~_t)
 *   y_t   = tanh(W_O h_t + b_O)
 *
 * Blobs: W_I (H x D), b_I (H), W_H (H x H), W_O (H x H), b_O (H) -- the RNN
 * layer's five, in its order -- then W_m (H x H), b_m (H) in modes TPU/TP1.
 * Weights are filled from recurrent_param.weight_filler unless tpu_param sets
 * input_weight_filler (W_I), hidden_weight_filler (W_H, W_O) or
 * modulation_weight_filler (W_m): W_I's fan-in is D, the others' H, and W_m
 * multiplies tp, which is in the input's units.
 *
 * tp_t is treated as data: no gradient flows through it to x. Unlike
 * RecurrentLayer, no hidden state is carried from one batch to the next
 * (h_{-1} = 0), as each batch holds whole clips.
 */
template <typename Dtype>
class TPULayer : public Layer<Dtype> {
 public:
  explicit TPULayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "TPU"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    // Can't propagate to sequence continuation indicators.
    return bottom_index != 1;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  bool has_h_step() const { return mode_ != TPUParameter_Mode_RNN; }

  TPUParameter_Mode mode_;
  TPUParameter_FirstTP first_tp_;
  int T_;  // time steps
  int N_;  // independent sequences per step
  int D_;  // input features per row
  int H_;  // hidden and output size

  Blob<Dtype> tp_;       // T x N temporal perception
  Blob<Dtype> htilde_;   // T x N x H, tanh(W_I x + b_I + W_H (cont h_{t-1}))
  Blob<Dtype> scaled_;   // T x N x H, tp * htilde (mode TPU/TP1)
  Blob<Dtype> hidden_;   // T x N x H, h_t (the recurrent state)
  Blob<Dtype> grad_h_;   // N x H scratch: cont_t h_{t-1} (data), dL/dh_{t-1} (diff)
  Blob<Dtype> bias_multiplier_;  // T*N ones
};

}  // namespace caffe

#endif  // CAFFE_TPU_LAYER_HPP_
