// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ISparsePerceptronView} from "./market/ISparsePerceptronView.sol";

/// @notice A prediction market for data (Harris & Waggoner 2019, section on prediction markets; the
/// reference implementation has it only in its Python simulation). One contract runs one market.
///
/// Phases: None -> Initialization -> Participation -> RevealTestSet -> Reward (passes) -> Collect.
///
/// * Initialization: the provider (the deployer) deposits the bounty with `initializeMarket` and
///   commits to a test set split into k > 1 portions, one hash each:
///   keccak256(abi.encode(bytes32 salt, int64[][] samples, uint64[] labels)). One portion, chosen by a
///   reveal index the provider cannot predict, must be revealed before participation opens; it is not
///   used for scoring. The index comes from the hash of a block mined after the last commitment:
///   `drawBlock = block.number + revealDelayBlocks` at each commitment, and
///   index = keccak256(blockhash(drawBlock), this, k) % k, drawn by anyone once drawBlock is mined.
///   Adding hashes (allowed only while the draw block is not mined yet) re-schedules the draw, so the
///   provider never learns the index while it can still change the commitment. Residual bias: the
///   proposer of the draw block could withhold it, and if nobody draws within 256 blocks the draw moves
///   to a new block (blockhash forgets older blocks), so participants should draw promptly (anyone can).
/// * Participation: `addData` with a stake >= minStake (exactly minStake is kept unless
///   allowGreaterStake; any excess is returned). The model is not trained. The data is stored (the
///   reward phase replays it); samples are presence sets: distinct feature indices in increasing order.
///   Anyone may end the phase once minNumContributions arrived or minLengthS passed since it opened.
/// * RevealTestSet: every remaining portion is revealed in index order and checked against its hash.
/// * Reward: `processContributions(maxCount)`, callable by anyone, visits at most maxCount
///   contributions per transaction. Each pass replays the remaining contributions in order on the
///   starting model and scores each by the change in the number of correctly classified test samples
///   it caused (score / N is the change in accuracy, N = number of test samples). At the end of a pass
///   with a negative score, rounds = min over negative contributions of floor(balance / -score), capped
///   by the remaining bounty rounds; every balance changes by score * rounds; contributions whose
///   balance fell below minStake leave the market (their balance is credited) at the start of the next
///   pass. When nobody is negative, or the bounty rounds are used up, all remaining rounds are applied
///   at once and every remaining balance is credited (a last, settle-only pass). The bounty in wei is
///   the number of rounds; balances are kept scaled by N so that all arithmetic is exact integers.
/// * Collect: each participant withdraws with `collect`; LATE_CLAIM_WAIT_S after the reward phase
///   ended anyone may claim a balance left unclaimed (`claimUnclaimed`). The provider's balance is
///   what is left of bounty + stakes after crediting the participants.
///
/// Safety valves: the provider may cancel before participation opens (bounty back); if the test set
/// is not fully revealed revealTimeoutS after participation ended, anyone may abort: every participant
/// gets its stakes back plus a share of the bounty proportional to them.
///
/// Differences from the reference simulation: the minimum duration counts from the opening of
/// participation (not from initialization); contributions are scored one by one (its "ungrouped"
/// mode) with each one's own balance, and what a contribution keeps is exactly its balance (the
/// reference credited exhausted contributions on top of their deposits and overwrote balances at the
/// end); rounds are limited by the first negative contribution to run out (min of balance / -score),
/// not only by the worst score, so no balance goes below zero; a late claim takes the participant's
/// balance (the reference deleted the claimer's). Each pass drops at least one contribution or ends
/// the phase, so a market of n contributions needs at most n + 1 passes, O(n^2) visits in all.
///
/// Replay design: the market owns its starting model (a SparsePerceptron whose ownership was moved
/// here, so nobody can train it), reads it through views and keeps its own changes in an overlay of
/// weight deltas tagged with the pass number: a new pass is a reset in O(1). Each test sample keeps
/// its current margin (intercept + sum of weights), tagged the same way, and an inverted index lists
/// the test samples holding each feature. A perceptron update moves the weights of the contribution's
/// features only, so only the margins of the test samples sharing a feature change: the accuracy after
/// each contribution is exact and costs O(len(data) + test entries sharing its features), at most
/// O(maxDataLength + maxTestEntries) per contribution.
contract PredictionMarket {
    enum Phase {
        None,
        Initialization,
        Participation,
        RevealTestSet,
        Reward,
        Collect
    }

    struct Contribution {
        address contributor;
        uint32 label;
        int64 score; // correct-count change in the latest replay pass
    }

    /// A test sample: its margin under the starting model, its current margin in pass `epoch`.
    struct Sample {
        int104 initialMargin;
        int104 margin;
        uint40 epoch;
        uint8 label;
    }

    /// A weight delta valid in pass `epoch` only (older tags read as 0).
    struct Delta {
        int192 value;
        uint64 epoch;
    }

    uint256 public constant LATE_CLAIM_WAIT_S = 7 days;

    ISparsePerceptronView public immutable model;
    address public immutable provider;
    uint256 public immutable minStake;
    bool public immutable allowGreaterStake;
    uint256 public immutable maxDataLength;
    uint256 public immutable maxTestEntries;
    uint256 public immutable revealDelayBlocks;
    uint256 public immutable revealTimeoutS;

    Phase public phase;
    int80 public startIntercept;
    int80 public startLearningRate;

    uint256 public totalBounty;
    uint256 public remainingRounds;
    uint256 public totalStakes;
    uint256 public totalCredited;
    uint256 public minLengthS;
    uint256 public minNumContributions;
    uint256 public earliestEndTime;
    uint256 public participationEndTime;
    uint256 public rewardEndTime;
    bool public aborted;

    // ---- commitment -------------------------------------------------------------------------------
    bytes32[] private testSetHashes;
    uint256 public drawBlock;
    bool public revealIndexDrawn;
    uint256 public revealIndex;
    uint256 public nextPortion;

    // ---- revealed test set ------------------------------------------------------------------------
    uint256 public numTestSamples;
    uint256 public numTestEntries;
    uint256 public initialCorrect;
    mapping(uint256 => Sample) private samples;
    mapping(uint256 => uint32[]) private postings; // feature => test samples holding it
    mapping(uint256 => Delta) private overlay; // feature => weight delta of the replay model

    // ---- contributions ----------------------------------------------------------------------------
    uint256 public contributionCount;
    mapping(uint256 => Contribution) private contributions;
    mapping(uint256 => int64[]) private contributionData;
    /// The stake (wei) until the first reward pass visits it, then the balance scaled by N (wei * N).
    mapping(uint256 => uint256) private balances;
    uint32[] private active; // ids still in the market, in order; entries past activeCount are stale

    // ---- reward passes ----------------------------------------------------------------------------
    uint256 public pass; // 1 for the first pass; also the tag of the overlay and the margins
    uint256 public lastReplayPass;
    uint256 public cursor;
    uint256 public kept;
    uint256 public activeCount;
    uint256 public correct;
    uint256 public prevRounds;
    uint256 public passMinRounds;
    bool public anyNegative;
    bool public settling;

    // ---- payouts ----------------------------------------------------------------------------------
    mapping(address => uint256) private credit;
    mapping(address => uint256) public stakeOf;
    uint256 private abortStakeLeft;
    uint256 private abortBountyLeft;

    event MarketInitialized(address indexed provider, uint256 bounty, uint256 numPortions, uint256 drawBlock);
    event TestSetHashesAdded(uint256 numPortions, uint256 drawBlock);
    event RevealDrawRescheduled(uint256 drawBlock);
    event RevealIndexDrawn(uint256 index);
    event ParticipationStarted(uint256 earliestEndTime);
    event AddData(int64[] d, uint64 c, uint256 t, address indexed sender, uint256 cost);
    event ParticipationEnded(uint256 numContributions);
    event TestSetPortionRevealed(uint256 index, uint256 numSamples);
    event RewardPhaseStarted(uint256 numTestSamples, uint256 initialCorrect);
    event PassCompleted(uint256 pass, uint256 survivors, uint256 correct, uint256 rounds, uint256 remainingRounds);
    event ContributionSettled(uint256 indexed id, address indexed contributor, uint256 amount);
    event RewardPhaseEnded(uint256 providerAmount);
    event MarketCancelled();
    event MarketAborted();
    event Collected(address indexed participant, address indexed recipient, uint256 amount);

    error WrongPhase(Phase current);
    error NotProvider(address caller);
    error ZeroBounty();
    error TooFewPortions(uint256 numPortions);
    error NoHashes();
    error ModelNotOwnedByMarket(address owner);
    error BadParameter();
    error DrawBlockPassed(uint256 drawBlock);
    error TooEarlyToDraw(uint256 drawBlock);
    error DrawExpired(uint256 drawBlock);
    error HashMismatch(uint256 portion);
    error WrongPortion(uint256 expected);
    error BadTestSet();
    error TooManyTestEntries(uint256 entries, uint256 max);
    error DidNotPayEnough(uint256 required, uint256 paid);
    error BadData();
    error BadClassification(uint64 classification);
    error CannotEndYet(uint256 numContributions, uint256 earliestEndTime);
    error RevealNotTimedOut(uint256 deadline);
    error NothingToCollect();
    error TooEarlyToClaim(uint256 allowedFrom);
    error Reentrancy();
    error PaymentFailed(address to, uint256 amount);
    error ValueOutOfRange();

    modifier onlyProvider() {
        if (msg.sender != provider) revert NotProvider(msg.sender);
        _;
    }

    modifier inPhase(Phase p) {
        if (phase != p) revert WrongPhase(phase);
        _;
    }

    modifier nonReentrant() {
        bool locked;
        assembly {
            locked := tload(0)
        }
        if (locked) revert Reentrancy();
        assembly {
            tstore(0, 1)
        }
        _;
        assembly {
            tstore(0, 0)
        }
    }

    constructor(
        ISparsePerceptronView model_,
        uint256 minStake_,
        bool allowGreaterStake_,
        uint256 maxDataLength_,
        uint256 maxTestEntries_,
        uint256 revealDelayBlocks_,
        uint256 revealTimeoutS_
    ) {
        // A zero reveal timeout would let any participant abort the market before the provider can
        // reveal; a draw delay past 128 blocks would leave little of blockhash's 256-block window.
        if (minStake_ == 0 || maxDataLength_ == 0 || maxTestEntries_ == 0 || revealDelayBlocks_ == 0
            || revealDelayBlocks_ > 128 || maxTestEntries_ > type(uint32).max || revealTimeoutS_ == 0) {
            revert BadParameter();
        }
        model = model_;
        provider = msg.sender;
        minStake = minStake_;
        allowGreaterStake = allowGreaterStake_;
        maxDataLength = maxDataLength_;
        maxTestEntries = maxTestEntries_;
        revealDelayBlocks = revealDelayBlocks_;
        revealTimeoutS = revealTimeoutS_;
    }

    // =============================================================================================
    // Initialization
    // =============================================================================================

    /// Deposit the bounty (msg.value wei = the number of rounds) and commit to k > 1 test portions.
    function initializeMarket(bytes32[] calldata hashes, uint256 minLengthS_, uint256 minNumContributions_)
        external
        payable
        onlyProvider
        inPhase(Phase.None)
    {
        if (msg.value == 0) revert ZeroBounty();
        if (hashes.length < 2) revert TooFewPortions(hashes.length);
        address owner_ = model.owner();
        if (owner_ != address(this)) revert ModelNotOwnedByMarket(owner_);
        startIntercept = model.intercept();
        startLearningRate = model.learningRate();
        for (uint256 i = 0; i < hashes.length; ++i) {
            testSetHashes.push(hashes[i]);
        }
        totalBounty = msg.value;
        remainingRounds = msg.value;
        minLengthS = minLengthS_;
        minNumContributions = minNumContributions_;
        drawBlock = block.number + revealDelayBlocks;
        phase = Phase.Initialization;
        emit MarketInitialized(msg.sender, msg.value, hashes.length, drawBlock);
    }

    /// More portions (e.g. when they do not fit one transaction). Only before the draw block is mined;
    /// the draw moves to a later block.
    function addTestSetHashes(bytes32[] calldata more) external onlyProvider inPhase(Phase.Initialization) {
        if (more.length == 0) revert NoHashes();
        if (block.number > drawBlock) revert DrawBlockPassed(drawBlock);
        for (uint256 i = 0; i < more.length; ++i) {
            testSetHashes.push(more[i]);
        }
        drawBlock = block.number + revealDelayBlocks;
        emit TestSetHashesAdded(testSetHashes.length, drawBlock);
    }

    /// Fix the reveal index from the draw block's hash (anyone). If that hash is no longer available
    /// (more than 256 blocks old) the draw moves to a new future block instead.
    function drawRevealIndex() external inPhase(Phase.Initialization) {
        if (revealIndexDrawn) return;
        if (!_draw()) {
            drawBlock = block.number + revealDelayBlocks;
            emit RevealDrawRescheduled(drawBlock);
        }
    }

    function _draw() private returns (bool) {
        if (block.number <= drawBlock) revert TooEarlyToDraw(drawBlock);
        bytes32 h = blockhash(drawBlock);
        if (h == bytes32(0)) return false;
        uint256 k = testSetHashes.length;
        revealIndex = uint256(keccak256(abi.encode(h, address(this), k))) % k;
        revealIndexDrawn = true;
        emit RevealIndexDrawn(revealIndex);
        return true;
    }

    /// Reveal the drawn portion (anyone holding it); participation opens.
    function revealInitTestSet(bytes32 salt, int64[][] calldata data, uint64[] calldata labels)
        external
        inPhase(Phase.Initialization)
    {
        if (!revealIndexDrawn && !_draw()) revert DrawExpired(drawBlock);
        _verify(revealIndex, salt, data, labels);
        for (uint256 i = 0; i < data.length; ++i) {
            _checkSample(data[i], labels[i]);
        }
        nextPortion = revealIndex == 0 ? 1 : 0;
        earliestEndTime = block.timestamp + minLengthS;
        phase = Phase.Participation;
        emit ParticipationStarted(earliestEndTime);
    }

    /// The provider withdraws before anyone could participate.
    function cancelMarket() external onlyProvider inPhase(Phase.Initialization) {
        _credit(provider, totalBounty);
        _enterCollect();
        emit MarketCancelled();
    }

    // =============================================================================================
    // Participation
    // =============================================================================================

    function addData(int64[] calldata data, uint64 classification)
        external
        payable
        nonReentrant
        inPhase(Phase.Participation)
    {
        if (msg.value < minStake) revert DidNotPayEnough(minStake, msg.value);
        uint256 len = data.length;
        if (len == 0 || len > maxDataLength) revert BadData();
        _checkSample(data, classification);
        uint256 stake = allowGreaterStake ? msg.value : minStake;
        uint256 id = contributionCount;
        if (id >= type(uint32).max) revert BadData();
        contributionCount = id + 1;
        contributions[id] = Contribution(msg.sender, uint32(classification), 0);
        contributionData[id] = data;
        balances[id] = stake;
        active.push(uint32(id));
        stakeOf[msg.sender] += stake;
        totalStakes += stake;
        emit AddData(data, classification, block.timestamp, msg.sender, stake);
        uint256 excess = msg.value - stake;
        if (excess > 0) _pay(msg.sender, excess);
    }

    /// Anyone, once enough contributions arrived or the minimum duration passed.
    function endParticipation() external inPhase(Phase.Participation) {
        uint256 n = contributionCount;
        if (n < minNumContributions && block.timestamp < earliestEndTime) {
            revert CannotEndYet(n, earliestEndTime);
        }
        participationEndTime = block.timestamp;
        emit ParticipationEnded(n);
        if (n == 0) {
            _finish(); // nothing to score: the provider takes the bounty back
        } else {
            phase = Phase.RevealTestSet;
        }
    }

    // =============================================================================================
    // Reveal of the test set
    // =============================================================================================

    /// Reveal portion `index` (portions go in index order, skipping the reveal index). Each test
    /// sample's margin under the starting model is computed here and its features are indexed.
    function revealTestSet(uint256 index, bytes32 salt, int64[][] calldata data, uint64[] calldata labels)
        external
        inPhase(Phase.RevealTestSet)
    {
        if (index != nextPortion) revert WrongPortion(nextPortion);
        _verify(index, salt, data, labels);
        uint256 j = numTestSamples;
        uint256 entries = numTestEntries;
        uint256 good = initialCorrect;
        int256 b = startIntercept;
        for (uint256 s = 0; s < data.length; ++s) {
            int64[] calldata x = data[s];
            uint64 label = labels[s];
            _checkSample(x, label);
            int256 m = b;
            for (uint256 i = 0; i < x.length; ++i) {
                uint256 f = uint256(uint64(x[i]));
                m += model.weights(f);
                postings[f].push(uint32(j));
            }
            entries += x.length;
            samples[j] = Sample(_i104(m), 0, 0, uint8(label));
            if ((m > 0 ? 1 : 0) == label) ++good;
            ++j;
        }
        if (entries > maxTestEntries) revert TooManyTestEntries(entries, maxTestEntries);
        numTestSamples = j;
        numTestEntries = entries;
        initialCorrect = good;
        emit TestSetPortionRevealed(index, data.length);

        uint256 next = index + 1;
        if (next == revealIndex) ++next;
        nextPortion = next;
        if (next >= testSetHashes.length) {
            pass = 1;
            activeCount = contributionCount;
            correct = good;
            phase = Phase.Reward;
            emit RewardPhaseStarted(j, good);
        }
    }

    /// The provider did not reveal in time: stakes go back and the bounty is shared by stake.
    function abortMarket() external inPhase(Phase.RevealTestSet) {
        uint256 deadline = participationEndTime + revealTimeoutS;
        if (block.timestamp < deadline) revert RevealNotTimedOut(deadline);
        aborted = true;
        abortStakeLeft = totalStakes;
        abortBountyLeft = totalBounty;
        _enterCollect();
        emit MarketAborted();
    }

    // =============================================================================================
    // Reward
    // =============================================================================================

    /// Visit at most maxCount contributions (anyone). Returns how many were visited.
    function processContributions(uint256 maxCount) external inPhase(Phase.Reward) returns (uint256 visited) {
        while (true) {
            if (cursor == activeCount) {
                _endPass();
                if (phase != Phase.Reward) break;
            }
            if (visited == maxCount) break;
            _visit(active[cursor]);
            ++cursor;
            ++visited;
        }
    }

    function _visit(uint256 id) private {
        Contribution storage c = contributions[id];
        uint256 n = numTestSamples;
        uint256 bal = balances[id];
        if (pass == 1) {
            bal *= n; // stake in wei -> balance scaled by N
        } else if (prevRounds != 0) {
            int256 nb = int256(bal) + int256(c.score) * int256(prevRounds);
            bal = uint256(nb); // never negative: rounds <= balance / -score for every negative score
        }
        balances[id] = bal;
        if (settling || bal < minStake * n) {
            uint256 amount = bal / n;
            _credit(c.contributor, amount);
            emit ContributionSettled(id, c.contributor, amount);
            return;
        }
        active[kept] = uint32(id);
        ++kept;
        int256 score = _replay(id, c.label);
        c.score = int64(score);
        if (score < 0) {
            uint256 r = bal / uint256(-score);
            if (!anyNegative || r < passMinRounds) {
                passMinRounds = r;
                anyNegative = true;
            }
        }
    }

    /// Train the replay model on one contribution; returns the change in correct test predictions.
    function _replay(uint256 id, uint256 label) private returns (int256) {
        int64[] storage x = contributionData[id];
        uint256 len = x.length;
        uint256 ep = pass;
        int256 m = startIntercept;
        for (uint256 i = 0; i < len; ++i) {
            uint256 f = uint256(uint64(x[i]));
            m += model.weights(f);
            Delta storage d = overlay[f];
            if (d.epoch == ep) m += d.value;
        }
        if ((m > 0 ? 1 : 0) == label) return 0;
        int256 delta = label == 1 ? int256(startLearningRate) : -int256(startLearningRate);
        uint256 before = correct;
        uint256 good = before;
        for (uint256 i = 0; i < len; ++i) {
            uint256 f = uint256(uint64(x[i]));
            Delta storage d = overlay[f];
            int256 v = (d.epoch == ep ? int256(d.value) : int256(0)) + delta;
            if (v < type(int192).min || v > type(int192).max) revert ValueOutOfRange();
            d.value = int192(v);
            d.epoch = uint64(ep);
            good = _shiftMargins(postings[f], delta, ep, good);
        }
        correct = good;
        return int256(good) - int256(before);
    }

    /// Move the margins of the test samples listed in `p` by `delta`; returns the new correct count.
    function _shiftMargins(uint32[] storage p, int256 delta, uint256 ep, uint256 good) private returns (uint256) {
        uint256 plen = p.length;
        for (uint256 q = 0; q < plen; ++q) {
            Sample storage s = samples[p[q]];
            int256 old = s.epoch == ep ? int256(s.margin) : int256(s.initialMargin);
            int256 nm = old + delta;
            uint256 lab = s.label;
            bool was = (old > 0 ? 1 : 0) == lab;
            bool isNow = (nm > 0 ? 1 : 0) == lab;
            if (was != isNow) {
                if (isNow) ++good;
                else --good;
            }
            s.margin = _i104(nm);
            s.epoch = uint40(ep);
        }
        return good;
    }

    function _endPass() private {
        if (settling) {
            _finish();
            return;
        }
        uint256 survivors = kept;
        if (survivors == 0) {
            _finish(); // everyone left; unused rounds stay with the provider
            return;
        }
        lastReplayPass = pass;
        uint256 rounds = remainingRounds;
        if (anyNegative && passMinRounds < rounds) rounds = passMinRounds;
        remainingRounds -= rounds;
        if (!anyNegative || remainingRounds == 0) settling = true;
        prevRounds = rounds;
        emit PassCompleted(pass, survivors, correct, rounds, remainingRounds);
        pass += 1;
        cursor = 0;
        kept = 0;
        activeCount = survivors;
        correct = initialCorrect;
        anyNegative = false;
        passMinRounds = 0;
    }

    function _finish() private {
        uint256 leftover = totalBounty + totalStakes - totalCredited;
        _credit(provider, leftover);
        _enterCollect();
        emit RewardPhaseEnded(leftover);
    }

    function _enterCollect() private {
        phase = Phase.Collect;
        rewardEndTime = block.timestamp;
        remainingRounds = 0;
    }

    function _credit(address a, uint256 amount) private {
        if (amount == 0) return;
        credit[a] += amount;
        totalCredited += amount;
    }

    // =============================================================================================
    // Collect
    // =============================================================================================

    function collect() external nonReentrant inPhase(Phase.Collect) returns (uint256 amount) {
        amount = _take(msg.sender);
        emit Collected(msg.sender, msg.sender, amount);
        _pay(msg.sender, amount);
    }

    /// After LATE_CLAIM_WAIT_S from the end of the reward phase, anyone takes an unclaimed balance.
    function claimUnclaimed(address participant) external nonReentrant inPhase(Phase.Collect) returns (uint256 amount) {
        uint256 from = rewardEndTime + LATE_CLAIM_WAIT_S;
        if (block.timestamp < from) revert TooEarlyToClaim(from);
        amount = _take(participant);
        emit Collected(participant, msg.sender, amount);
        _pay(msg.sender, amount);
    }

    function _take(address a) private returns (uint256 amount) {
        amount = credit[a];
        credit[a] = 0;
        if (aborted) {
            uint256 s = stakeOf[a];
            if (s > 0) {
                stakeOf[a] = 0;
                uint256 share = s == abortStakeLeft ? abortBountyLeft : abortBountyLeft * s / abortStakeLeft;
                abortStakeLeft -= s;
                abortBountyLeft -= share;
                amount += s + share;
            }
        }
        if (amount == 0) revert NothingToCollect();
    }

    function _pay(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert PaymentFailed(to, amount);
    }

    // =============================================================================================
    // Checks and helpers
    // =============================================================================================

    function _verify(uint256 index, bytes32 salt, int64[][] calldata data, uint64[] calldata labels) private view {
        if (data.length == 0 || data.length != labels.length) revert BadTestSet();
        if (keccak256(abi.encode(salt, data, labels)) != testSetHashes[index]) revert HashMismatch(index);
    }

    /// A presence set: distinct non-negative feature indices in increasing order; a binary label.
    function _checkSample(int64[] calldata x, uint64 label) private pure {
        if (label > 1) revert BadClassification(label);
        int64 prev = -1;
        for (uint256 i = 0; i < x.length; ++i) {
            if (x[i] <= prev) revert BadData();
            prev = x[i];
        }
    }

    function _i104(int256 v) private pure returns (int104) {
        if (v < type(int104).min || v > type(int104).max) revert ValueOutOfRange();
        return int104(v);
    }

    // =============================================================================================
    // Views
    // =============================================================================================

    function numPortions() external view returns (uint256) {
        return testSetHashes.length;
    }

    function getTestSetHashes() external view returns (bytes32[] memory) {
        return testSetHashes;
    }

    /// The starting model's prediction (the model does not change during the market).
    function predict(int64[] calldata data) external view returns (uint64) {
        return model.predict(data);
    }

    /// What `a` can collect now.
    function claimableBalance(address a) public view returns (uint256 amount) {
        amount = credit[a];
        if (aborted) {
            uint256 s = stakeOf[a];
            if (s > 0) amount += s + (s == abortStakeLeft ? abortBountyLeft : abortBountyLeft * s / abortStakeLeft);
        }
    }

    function getContribution(uint256 id)
        external
        view
        returns (address contributor, uint64 label, int64 score, uint256 balance, int64[] memory data)
    {
        Contribution memory c = contributions[id];
        return (c.contributor, c.label, c.score, balances[id], contributionData[id]);
    }

    /// A weight of the model as replayed in the latest completed replay pass: once the reward phase
    /// has ended, the starting model trained on the contributions of the last pass, in order.
    function marketWeight(uint256 feature) external view returns (int256) {
        Delta memory d = overlay[feature];
        int256 w = model.weights(feature);
        if (lastReplayPass != 0 && d.epoch == lastReplayPass) w += d.value;
        return w;
    }
}
