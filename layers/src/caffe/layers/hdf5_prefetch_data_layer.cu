#ifdef USE_HDF5
#include <unistd.h>

#include <vector>

#include "caffe/layers/hdf5_prefetch_data_layer.hpp"

namespace caffe {

// The batch is already on the device (pushed by the prefetch thread): the
// tops take its memory, no copy on the training thread.
template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  CHECK_EQ(owner_, getpid()) << this->type() << " " << this->layer_param_.name()
      << ": its reading thread does not survive fork(); make the net in the "
      << "process that runs it";
  if (this->current_) {
    // Kernels queued until now (the last backward pass) may still read it.
    CUDA_CHECK(cudaEventRecord(released_[Index(this->current_)], 0));
    this->Push(&this->free_, this->current_);
  }
  this->current_ = this->Pop(&this->full_);
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
