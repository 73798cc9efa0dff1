// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "./Ownable.sol";
import {IClassifier} from "./Classifier.sol";

/// @notice Binary perceptron over sparse inputs: a sample is the list of indices of its present
/// features. Weights, intercept and learning rate are fixed point with scale 1e9.
/// predict: 1 if intercept + sum(weights[i]) > 0 else 0.
/// update: only on a mistake, each listed weight moves by +learningRate (label 1) or -learningRate
/// (label 0). The intercept is never updated (as in the reference).
/// Weights are int80, packed three to a storage slot: deployment writes a third of the slots.
contract SparsePerceptron is Ownable, IClassifier {
    uint256 private constant PER_SLOT = 3;
    uint256 private constant WIDTH = 80;
    uint256 private constant MASK = (uint256(1) << 80) - 1;

    string[] public classifications;
    int80 public intercept;
    int80 public learningRate;

    mapping(uint256 => uint256) private packedWeights;

    event AddClass(string name, uint256 index);

    error NegativeFeatureIndex(int64 index);
    error BadClassification(uint64 classification);
    error UnalignedChunk(uint256 startIndex);
    error LengthMismatch();

    constructor(string[] memory classifications_, int80 intercept_, int80 learningRate_) {
        if (classifications_.length != 2) revert BadClassification(uint64(classifications_.length));
        for (uint256 i = 0; i < classifications_.length; ++i) {
            classifications.push(classifications_[i]);
            emit AddClass(classifications_[i], i);
        }
        intercept = intercept_;
        learningRate = learningRate_;
    }

    function getNumClassifications() external view returns (uint256) {
        return classifications.length;
    }

    /// Deployment in chunks: weights for indices startIndex .. startIndex+len-1. startIndex must be a
    /// multiple of 3 so whole slots are written without reading them first.
    function initializeWeights(uint256 startIndex, int80[] calldata weights_) external onlyOwner {
        if (startIndex % PER_SLOT != 0) revert UnalignedChunk(startIndex);
        uint256 n = weights_.length;
        uint256 slot = startIndex / PER_SLOT;
        for (uint256 i = 0; i < n; i += PER_SLOT) {
            uint256 word = 0;
            uint256 end = i + PER_SLOT < n ? i + PER_SLOT : n;
            for (uint256 j = i; j < end; ++j) {
                word |= (uint256(uint80(weights_[j])) & MASK) << (WIDTH * (j - i));
            }
            if (end - i < PER_SLOT) {
                // A partial last slot keeps whatever lies beyond the chunk.
                uint256 keep = packedWeights[slot] & ~((uint256(1) << (WIDTH * (end - i))) - 1);
                word |= keep;
            }
            packedWeights[slot] = word;
            ++slot;
        }
    }

    /// Deployment of scattered weights: (index, weight) pairs.
    function initializeSparseWeights(uint64[] calldata indices, int80[] calldata weights_) external onlyOwner {
        if (indices.length != weights_.length) revert LengthMismatch();
        for (uint256 i = 0; i < indices.length; ++i) {
            _setWeight(indices[i], weights_[i]);
        }
    }

    function weights(uint256 index) public view returns (int80) {
        uint256 word = packedWeights[index / PER_SLOT];
        return int80(uint80(word >> (WIDTH * (index % PER_SLOT))));
    }

    /// Bulk read for off-chain twins: weights[start .. start+count-1].
    function getWeights(uint256 start, uint256 count) external view returns (int80[] memory out) {
        out = new int80[](count);
        for (uint256 i = 0; i < count; ++i) {
            out[i] = weights(start + i);
        }
    }

    function predict(int64[] calldata data) public view returns (uint64) {
        int256 sum = intercept;
        for (uint256 i = 0; i < data.length; ++i) {
            int64 idx = data[i];
            if (idx < 0) revert NegativeFeatureIndex(idx);
            sum += weights(uint256(uint64(idx)));
        }
        return sum > 0 ? 1 : 0;
    }

    function update(int64[] calldata data, uint64 classification) external onlyOwner {
        if (classification > 1) revert BadClassification(classification);
        if (predict(data) == classification) return;
        int80 delta = classification == 1 ? learningRate : -learningRate;
        for (uint256 i = 0; i < data.length; ++i) {
            uint256 idx = uint256(uint64(data[i]));
            _setWeight(idx, weights(idx) + delta);
        }
    }

    function _setWeight(uint256 index, int80 w) internal {
        uint256 slot = index / PER_SLOT;
        uint256 shift = WIDTH * (index % PER_SLOT);
        uint256 word = packedWeights[slot];
        word = (word & ~(MASK << shift)) | ((uint256(uint80(w)) & MASK) << shift);
        packedWeights[slot] = word;
    }
}
