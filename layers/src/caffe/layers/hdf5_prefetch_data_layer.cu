#ifdef USE_HDF5
#include <vector>

#include "caffe/layers/hdf5_prefetch_data_layer.hpp"

namespace caffe {

// The batch is already on the device (pushed by the prefetch thread): the
// tops take its memory, no copy on the training thread.
template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  TakeBatch();
  for (int j = 0; j < top.size(); ++j) {
    top[j]->ReshapeLike(*(*this->current_)[j]);
    // gpu_data, not mutable_gpu_data: the batch stays in sync, so the thread
    // refills its host memory without first copying the device's back.
    top[j]->set_gpu_data(
        const_cast<Dtype*>((*this->current_)[j]->gpu_data()));
  }
}

INSTANTIATE_LAYER_GPU_FORWARD(HDF5PrefetchDataLayer);

}  // namespace caffe
#endif  // USE_HDF5
